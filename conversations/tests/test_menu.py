"""The keyword menu, as a texter moves through it: numbers, sub-menus, BACK and MENU."""

import pytest

pytestmark = pytest.mark.conversation("conversations.menu:step")

TOP = "Harbour Salon:\n1 Opening hours\n2 Find us\n3 Prices\nReply with a number."


def test_the_first_message_gets_the_menu(twilio):
    assert twilio.send("hello").text == TOP
    assert twilio.state() == {"path": []}


def test_a_number_opens_its_entry_and_back_and_menu_move_up(twilio):
    twilio.send("hi")
    prices = twilio.send("3").text
    assert prices == "Our prices:\nPrices:\n1 Haircut\n2 Colour\nReply with a number, BACK or MENU."
    assert twilio.send("1").text == "A haircut is $25, $15 for children.\nReply with a number, BACK or MENU."
    assert twilio.state() == {"path": [3]}  # a leaf says its text; the texter stays in Prices
    assert twilio.send("back").text == TOP
    twilio.send("1")
    twilio.send("1")
    assert twilio.send(" Menu ").text == TOP


def test_an_unknown_choice_shows_the_menu_again(twilio):
    twilio.send("hi")
    twilio.send("3")
    for choice in ("7", "0", "haircut", "", "²", "٣"):
        assert twilio.send(choice).text.startswith("Sorry, I didn't get that.\nPrices:\n1 Haircut")
    assert twilio.state() == {"path": [3]}


def test_the_menu_keeps_its_contract(conversation_contract):
    assert conversation_contract(seed=1) is None
