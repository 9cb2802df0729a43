"""Conversations as JSON: a round trip keeps everything, a wrong file says what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from localinfer.tui.conversation import (
    Attachment,
    Conversation,
    ConversationError,
    ReplyStats,
    ToolCall,
    Turn,
)
from tests.tui.canned import PIXEL_URL, TOOL_CONVERSATION


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
        (
            '{"format": "localinfer.conversation", "version": 1, "messages": '
            '[{"role": "user", "content": "x", "images": [{"name": "a", "url": "file:/a"}]}]}',
            "data: url",
        ),
        (
            '{"format": "localinfer.conversation", "version": 1, "messages": '
            '[{"role": "assistant", "content": "", "tool_calls": [{"id": "c"}]}]}',
            "needs a function",
        ),
    ],
)
def test_a_wrong_file_says_why(text: str, reason: str) -> None:
    with pytest.raises(ConversationError, match=reason):
        Conversation.from_json(text)


def test_a_missing_file_is_a_conversation_error(tmp_path: Path) -> None:
    with pytest.raises(ConversationError, match="cannot read"):
        Conversation.load(tmp_path / "nope.json")


def test_images_and_tool_calls_go_into_the_request_and_the_file(tmp_path: Path) -> None:
    assert TOOL_CONVERSATION.messages() == [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": PIXEL_URL}},
                {"type": "text", "text": "What is on this sign, and how warm is it there?"},
            ],
        },
        {
            "role": "assistant",
            "content": "The sign says **Lyon**. Checking the weather:",
            "tool_calls": [
                {
                    "id": "call_0",
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "arguments": '{"city": "Lyon", "unit": "celsius"}',
                    },
                }
            ],
        },
    ]
    assert Conversation.load(TOOL_CONVERSATION.save(tmp_path / "t.json")) == TOOL_CONVERSATION


def test_a_reply_of_only_tool_calls_sends_null_content() -> None:
    turn = Turn("assistant", "", tool_calls=(ToolCall("c", "f", "{}"),))
    assert turn.message()["content"] is None
    assert Turn("user", "hi", images=(Attachment("a.png", PIXEL_URL),)).message()["role"] == "user"
