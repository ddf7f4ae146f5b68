"""Clock skew between instances: two real servers whose clocks are 5 s apart keep one conversation."""

import os
import shutil
import time

import pytest
from helpers import ALICE, SERVICE, cookie_of, echoed, running_server, served_settings
from itsdangerous.encoding import base64_decode, bytes_to_int

from devtools.simulator import HttpTransport, Simulator

pytestmark = pytest.mark.server


def require_faketime() -> list[str]:
    """Return the command prefix that runs a server 5 s ahead; CI must have faketime, a laptop may skip."""
    if shutil.which("faketime"):
        return ["faketime", "-f", "+5s"]
    if os.environ.get("CI") == "true":
        pytest.fail("faketime is missing: apt-get install faketime")
    pytest.skip("needs Debian's faketime: apt-get install faketime")


def signed_at(cookie: str) -> int:
    """Read the itsdangerous timestamp of a signed cookie (payload.timestamp.signature)."""
    return bytes_to_int(base64_decode(cookie.rsplit(".", 2)[1]))


def test_two_instances_with_clocks_5_s_apart_keep_one_conversation(tmp_path):
    ahead = require_faketime()
    env = served_settings(2)
    with (
        running_server("serve", env, tmp_path / "on-time.log") as on_time,
        running_server("serve", env, tmp_path / "ahead.log", prefix=ahead) as fast,
    ):
        to_fast = Simulator(
            HttpTransport(), f"http://127.0.0.1:{fast.port}/sms", token=env["TWILIO_AUTH_TOKEN"]
        )
        to_on_time = Simulator(HttpTransport(), f"http://127.0.0.1:{on_time.port}/sms", token=to_fast.token)
        to_on_time.jars = to_fast.jars  # one phone number pair, one Twilio cookie jar, two instances
        replies = []
        for i, phone in enumerate([to_fast, to_on_time] * 3):
            replies.append(phone.send(f"message {i}", ALICE, SERVICE).text)
            if phone is to_fast:
                assert signed_at(cookie_of(phone, ALICE, SERVICE)) >= time.time() + 4  # its clock is ahead
    assert replies == [echoed(n + 1, f"message {n}") for n in range(6)]
    assert '"fresh"' not in (tmp_path / "on-time.log").read_text()  # neither expired nor from the future


def test_without_faketime_ci_fails_and_a_laptop_skips_saying_how_to_install_it(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get install faketime"):
        require_faketime()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="apt-get install faketime"):
        require_faketime()
