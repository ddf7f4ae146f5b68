"""A keyword menu: numbered options, sub-menus, MENU for the top, BACK for one level up.

    CONVERSATION=conversations.menu:step make run

The state is where the texter is in the menu (a list of option numbers), never what they typed.
"""

from __future__ import annotations

from conversation import Message, Reply

# Each entry: (title, what choosing it says, its own options).
MENU = (
    "Harbour Salon",
    "",
    (
        ("Opening hours", "Mon-Fri 9:00-17:00, Sat 10:00-14:00.", (
            ("Holiday hours", "Closed on public holidays; open until 20:00 on 23 December.", ()),
        )),
        ("Find us", "12 Harbour Street, next to the ferry terminal.", ()),
        ("Prices", "Our prices:", (
            ("Haircut", "A haircut is $25, $15 for children.", ()),
            ("Colour", "Colour starts at $60.", ()),
        )),
    ),
)  # fmt: skip
NOT_UNDERSTOOD = "Sorry, I didn't get that."
HINT = "Reply with a number, BACK or MENU."


def entry_at(path: list[int]) -> tuple:
    """Return the menu entry a path of option numbers leads to."""
    entry = MENU
    for number in path:
        entry = entry[2][number - 1]
    return entry


def listing(path: list[int]) -> str:
    """Return the options of the entry at `path`, numbered, with how to move."""
    title, _, options = entry_at(path)
    lines = [f"{title}:"] + [f"{n} {option[0]}" for n, option in enumerate(options, 1)]
    moves = "Reply with a number" + (", BACK or MENU." if path else ".")
    return "\n".join([*lines, moves])


def step(state: dict, message: Message) -> Reply:
    """Move through the menu by number; MENU goes to the top, BACK one level up."""
    path = list(state.get("path", []))
    word = message.body.strip().upper()
    try:
        entry_at(path)
    except (IndexError, TypeError):  # the menu changed under a live conversation: back to the top
        path, state = [], {}
    if not state or word == "MENU":
        return Reply(listing([]), {"path": []})
    if word == "BACK":
        path = path[:-1]
        return Reply(listing(path), {"path": path})
    options = entry_at(path)[2]
    if not (word.isascii() and word.isdigit() and 1 <= int(word) <= len(options)):  # "²" is a digit too
        return Reply(f"{NOT_UNDERSTOOD}\n{listing(path)}", state)
    chosen = options[int(word) - 1]
    if chosen[2]:  # a sub-menu: go into it
        path.append(int(word))
        return Reply(f"{chosen[1]}\n{listing(path)}", {"path": path})
    return Reply(f"{chosen[1]}\n{HINT}", state)  # a leaf: say it, stay where we are
