"""Conversations as JSON: a round trip keeps everything, a wrong file says what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from localinfer.tui.conversation import Conversation, ConversationError, ReplyStats, Turn


def sample() -> Conversation:
    return Conversation(
        model="tiny-chat",
        system="Be brief.",
        temperature=0.2,
        max_tokens=64,
        turns=[
            Turn("user", "Où est le café ? 🙂"),
            Turn("assistant", "**Ici.**", ReplyStats(12.5, 40.0, 3, "stop")),
            Turn("user", "Merci"),
            Turn("assistant", "De r", ReplyStats(9.0, None, None, "stopped")),
        ],
    )


def test_a_round_trip_through_a_file_keeps_everything(tmp_path: Path) -> None:
    path = sample().save(tmp_path / "deep" / "chat.json")
    assert Conversation.load(path) == sample()
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == "localinfer.conversation" and data["version"] == 1
    assert "🙂" in path.read_text(encoding="utf-8")  # readable, not \\u-escaped


def test_messages_are_what_the_next_request_sends() -> None:
    assert sample().messages() == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Où est le café ? 🙂"},
        {"role": "assistant", "content": "**Ici.**"},
        {"role": "user", "content": "Merci"},
        {"role": "assistant", "content": "De r"},
    ]
    assert Conversation(turns=[Turn("user", "hi")]).messages() == [
        {"role": "user", "content": "hi"}
    ]  # no empty system message


def test_stats_summary() -> None:
    assert ReplyStats(12.4, 40.0, 3, "stop").summary() == (
        "first token 12 ms · 40.0 tok/s · 3 tokens · stop"
    )
    assert ReplyStats(finish_reason="stopped").summary() == "stopped"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not json", "not JSON"),
        ('{"messages": []}', "not a localinfer conversation"),
        ('{"format": "localinfer.conversation", "version": 99}', "newer"),
        ('{"format": "localinfer.conversation", "version": 1, "messages": {}}', "must be a list"),
        (
            '{"format": "localinfer.conversation", "version": 1, '
            '"messages": [{"role": "system", "content": "x"}]}',
            "role must be user or assistant",
        ),
        (
            '{"format": "localinfer.conversation", "version": 1, '
            '"messages": [{"role": "user", "content": 3}]}',
            "content must be text",
        ),
        ('{"format": "localinfer.conversation", "version": 1, "max_tokens": "9"}', "max_tokens"),
        ('{"format": "localinfer.conversation", "version": 1, "temperature": true}', "number"),
    ],
)
def test_a_wrong_file_says_why(text: str, reason: str) -> None:
    with pytest.raises(ConversationError, match=reason):
        Conversation.from_json(text)


def test_a_missing_file_is_a_conversation_error(tmp_path: Path) -> None:
    with pytest.raises(ConversationError, match="cannot read"):
        Conversation.load(tmp_path / "nope.json")
