"""Chat: a multi-turn conversation with a loaded chat model, replies streamed as markdown.

A reply streams in a worker; ``escape`` cancels that worker, which closes the HTTP stream,
and the server stops generating when its client goes away. Each reply shows the time to
its first token and its tokens/s. Conversations are saved and opened as JSON
(:mod:`localinfer.tui.conversation`), settings included. ``/image PATH`` attaches an
image to the next message (read in a worker; a bad path is an error line, not a crash),
and the tool calls a reply ends with are drawn as boxes of their own.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Footer, Input, Label, Markdown, Select, Static

from localinfer import errors as e
from localinfer.client import ChatResult
from localinfer.tui.attachments import AttachmentError, read_image
from localinfer.tui.conversation import (
    Attachment,
    Conversation,
    ConversationError,
    ReplyStats,
    ToolCall,
    Turn,
)
from localinfer.tui.screens.base import AppScreen
from localinfer.tui.widgets.message import MessageView
from localinfer.tui.widgets.prompt import TextPrompt
from localinfer.tui.widgets.topbar import TopBar

DEFAULT_TEMPERATURE = 0.7
DEFAULT_MAX_TOKENS = 256


IMAGE_COMMAND = "/image"
DETACH_COMMAND = "/detach"


class SettingsError(ValueError):
    pass


def tool_calls_of(result: ChatResult | None) -> tuple[ToolCall, ...]:
    """The reply's typed calls as the conversation keeps them (arguments as JSON text)."""
    if result is None:
        return ()
    return tuple(
        ToolCall(call.id, call.name, json.dumps(call.arguments, ensure_ascii=False))
        for call in result.tool_calls
    )


def reply_stats(
    result: ChatResult | None, first_token_ms: float | None, chunks: int, elapsed_s: float
) -> ReplyStats:
    """The server's numbers for a finished reply; for a stopped one, what the screen saw."""
    if result is not None:
        timing = result.timing
        return ReplyStats(
            first_token_ms=timing.first_token_ms,
            tokens_per_second=timing.tokens_per_second or None,
            completion_tokens=result.usage.completion_tokens,
            finish_reason=result.finish_reason,
        )
    after_first = elapsed_s - (first_token_ms or 0.0) / 1e3
    return ReplyStats(
        first_token_ms=first_token_ms,
        tokens_per_second=chunks / after_first if chunks > 1 and after_first > 0 else None,
        finish_reason="stopped",
    )


class ChatScreen(AppScreen):
    """Model / temperature / max tokens / system prompt on top, the conversation, a prompt."""

    DEFAULT_CSS = """
    ChatScreen #settings, ChatScreen #system-row { height: 1; margin: 1 1 0 1; }
    ChatScreen #system-row { margin: 0 1; }
    ChatScreen .field-label { width: auto; padding: 0 1 0 0; color: $text-muted; }
    ChatScreen #model { width: 1fr; margin: 0 2 0 0; }
    ChatScreen #temperature { width: 7; margin: 0 2 0 0; }
    ChatScreen #max-tokens { width: 8; }
    ChatScreen #system { width: 1fr; }
    ChatScreen #conversation { height: 1fr; padding: 0 1; }
    ChatScreen #prompt { margin: 0 1; }
    ChatScreen #attachments { height: 1; margin: 0 2; color: $text-muted; display: none; }
    ChatScreen #attachments.-shown { display: block; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "stop", "Stop"),
        Binding("ctrl+s", "save", "Save"),
        Binding("ctrl+o", "open", "Open"),
        Binding("ctrl+n", "new", "New"),
        Binding("ctrl+r", "refresh_models", "Models", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.conversation = Conversation(
            temperature=DEFAULT_TEMPERATURE, max_tokens=DEFAULT_MAX_TOKENS
        )
        self.generating = False
        self.model_names: list[str] = []
        #: images for the next message (``/image PATH``), sent with it, then cleared
        self.pending: list[Attachment] = []

    def compose(self) -> ComposeResult:
        yield TopBar("chat")
        with Horizontal(id="settings"):
            yield Label("model", classes="field-label")
            yield Select[str]([], prompt="no chat model loaded", id="model", compact=True)
            yield Label("temperature", classes="field-label")
            yield Input(str(DEFAULT_TEMPERATURE), id="temperature", compact=True, type="number")
            yield Label("max tokens", classes="field-label")
            yield Input(str(DEFAULT_MAX_TOKENS), id="max-tokens", compact=True, type="integer")
        with Horizontal(id="system-row"):
            yield Label("system", classes="field-label")
            yield Input(placeholder="system prompt (optional)", id="system", compact=True)
        yield VerticalScroll(id="conversation")
        yield Static("", id="attachments")
        yield Input(placeholder="Message (enter sends · /image PATH attaches)", id="prompt")
        yield Static("", id="status", classes="status")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#prompt", Input).focus()

    def on_screen_resume(self) -> None:
        self.refresh_models()

    def status(self, message: str, *, error: bool = False) -> None:
        line = self.query_one("#status", Static)
        line.update(message)
        line.set_class(error, "-error")

    # -- models ----------------------------------------------------------------------------

    def action_refresh_models(self) -> None:
        self.refresh_models()

    @work(exclusive=True, group="chat-models", exit_on_error=False)
    async def refresh_models(self) -> None:
        models = await (await self.client()).models()
        names = [m.id for m in models.for_task("chat")]
        select: Select[str] = self.query_one("#model", Select)
        current = select.value if isinstance(select.value, str) else self.conversation.model
        self.model_names = names
        select.set_options([(name, name) for name in names])
        if current in names:
            select.value = current
        elif names:
            select.value = names[0]
        if not names:
            self.status("no chat model is loaded: load one on the Models screen (F2)")
        elif not self.generating:
            self.status(f"{len(names)} chat model(s) loaded · enter sends, escape stops")

    def chosen_model(self) -> str | None:
        value = self.query_one("#model", Select).value
        return value if isinstance(value, str) else None

    # -- settings --------------------------------------------------------------------------

    def read_settings(self) -> None:
        """The fields into :attr:`conversation` (raising SettingsError for a bad number)."""
        temperature = self.query_one("#temperature", Input).value.strip()
        max_tokens = self.query_one("#max-tokens", Input).value.strip()
        try:
            self.conversation.temperature = float(temperature) if temperature else None
        except ValueError:
            raise SettingsError(f"temperature {temperature!r} is not a number") from None
        try:
            self.conversation.max_tokens = int(max_tokens) if max_tokens else None
        except ValueError:
            raise SettingsError(f"max tokens {max_tokens!r} is not a whole number") from None
        self.conversation.system = self.query_one("#system", Input).value
        self.conversation.model = self.chosen_model() or self.conversation.model

    def show_settings(self) -> None:
        c = self.conversation
        self.query_one("#temperature", Input).value = (
            "" if c.temperature is None else str(c.temperature)
        )
        self.query_one("#max-tokens", Input).value = (
            "" if c.max_tokens is None else str(c.max_tokens)
        )
        self.query_one("#system", Input).value = c.system
        select: Select[str] = self.query_one("#model", Select)
        if c.model in self.model_names:
            select.value = c.model

    # -- sending ---------------------------------------------------------------------------

    @on(Input.Submitted, "#prompt")
    async def send(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        command, _, argument = text.partition(" ")
        if command == IMAGE_COMMAND:
            self.attach(argument.strip())
            return
        if command == DETACH_COMMAND:
            event.input.value = ""
            self.pending.clear()
            self.show_pending()
            self.status("no image attached")
            return
        if self.generating:
            self.notify("still answering: escape stops it", severity="warning")
            return
        model = self.chosen_model()
        if model is None:
            self.notify(
                "no chat model is loaded: load one on the Models screen (F2)", severity="error"
            )
            return
        try:
            self.read_settings()
        except SettingsError as exc:
            self.notify(str(exc), title="Settings", severity="error")
            return
        event.input.value = ""
        images = tuple(self.pending)
        self.pending.clear()
        self.show_pending()
        self.conversation.add(Turn("user", text, images=images))
        await self.query_one("#conversation", VerticalScroll).mount(
            MessageView("user", text, images=images)
        )
        self.generating = True
        self.generate(model)

    # -- images ----------------------------------------------------------------------------

    @work(group="attach", exit_on_error=False)
    async def attach(self, path: str) -> None:
        """Read the image off the event loop; a bad path is an error line and a notice."""
        if not path:
            self.status(f"usage: {IMAGE_COMMAND} PATH (an image file)", error=True)
            return
        try:
            image = await asyncio.to_thread(read_image, path)
        except AttachmentError as exc:
            self.status(f"cannot attach: {exc}", error=True)
            self.notify(str(exc), title="Image", severity="error")
            return
        self.pending.append(image)
        self.show_pending()
        prompt = self.query_one("#prompt", Input)
        if prompt.value.strip().startswith(IMAGE_COMMAND):
            prompt.value = ""
        self.status(f"attached {image.name}: it goes with the next message")

    def show_pending(self) -> None:
        line = self.query_one("#attachments", Static)
        names = ", ".join(image.name for image in self.pending)
        line.update(f"attached: {names} · {DETACH_COMMAND} drops" if names else "")
        line.set_class(bool(names), "-shown")

    @work(exclusive=True, group="chat", exit_on_error=False)
    async def generate(self, model: str) -> None:
        """Stream a reply into a new message; cancelling this worker stops the generation."""
        conversation = self.query_one("#conversation", VerticalScroll)
        view = MessageView("assistant", model=model)
        await conversation.mount(view)
        conversation.anchor()
        self.status(f"{model} is answering… escape stops")
        started = time.perf_counter()
        first_token_ms: float | None = None
        chunks = 0
        markdown = Markdown.get_stream(view.markdown)
        settings = self.conversation  # the one this reply belongs to, even after ctrl+n
        result: ChatResult | None = None
        failure: str | None = None
        text = ""
        try:
            client = await self.client()
            stream = client.chat(
                settings.messages(),
                model=model,
                stream=True,
                temperature=settings.temperature,
                max_tokens=settings.max_tokens,
            )
            async with stream:  # escape cancels this worker: leaving closes the stream,
                async for delta in stream:  # and the server stops generating
                    if first_token_ms is None:
                        first_token_ms = (time.perf_counter() - started) * 1e3
                    chunks += 1
                    text += delta
                    await markdown.write(delta)
            result = stream.result
            calls = tool_calls_of(result)
            if calls:
                await view.show_tool_calls(calls)
        except e.LocalInferError as exc:
            failure = f"failed: {exc.message}"
            raise
        finally:
            await markdown.stop()
            self.generating = False
            stats = reply_stats(result, first_token_ms, chunks, time.perf_counter() - started)
            if failure is None or text:
                settings.add(Turn("assistant", text, stats, tool_calls=tool_calls_of(result)))
            view.finish(stats, failed=None if failure is None or text else failure[:200])
            self.status(
                f"{model}: {stats.summary()}" if failure is None else f"{model} {failure}",
                error=failure is not None,
            )

    def action_stop(self) -> None:
        if self.generating:
            self.workers.cancel_group(self, "chat")
        else:
            self.notify("nothing to stop", severity="information", timeout=2)

    # -- files -----------------------------------------------------------------------------

    def action_save(self) -> None:
        prompt = TextPrompt("Save the conversation as", self.localinfer.conversation_path)
        self.app.push_screen(prompt, self._save_to)

    async def _save_to(self, path: str | None) -> None:
        if path is None:
            return
        await self.until_current()
        try:
            self.read_settings()
        except SettingsError as exc:
            self.notify(str(exc), title="Settings", severity="error")
            return
        try:
            written = self.conversation.save(path)
        except OSError as exc:
            self.notify(f"cannot write {path}: {exc.strerror or exc}", severity="error")
            return
        self.localinfer.conversation_path = path
        self.status(f"saved {len(self.conversation.turns)} messages to {written}")

    def action_open(self) -> None:
        if self.generating:
            self.notify("still answering: escape stops it first", severity="warning")
            return
        prompt = TextPrompt("Open the conversation in", self.localinfer.conversation_path)
        self.app.push_screen(prompt, self._open_from)

    async def _open_from(self, path: str | None) -> None:
        if path is None:
            return
        await self.until_current()
        try:
            conversation = Conversation.load(path)
        except ConversationError as exc:
            self.notify(str(exc), title="Cannot open", severity="error")
            return
        self.localinfer.conversation_path = path
        await self.show_conversation(conversation)
        self.status(f"opened {len(conversation.turns)} messages from {path}")

    async def show_conversation(self, conversation: Conversation) -> None:
        """Replace what is shown (and what the next request sends) with ``conversation``."""
        self.conversation = conversation
        self.show_settings()
        container = self.query_one("#conversation", VerticalScroll)
        await container.remove_children()
        model = conversation.model or ""
        await container.mount_all(
            MessageView(
                turn.role,
                turn.content,
                model=model,
                stats=turn.stats,
                images=turn.images,
                tool_calls=turn.tool_calls,
            )
            for turn in conversation.turns
        )
        self.call_after_refresh(container.scroll_end, animate=False)  # once laid out

    async def action_new(self) -> None:
        if self.generating:
            self.workers.cancel_group(self, "chat")
        self.read_settings_quietly()
        await self.show_conversation(
            Conversation(
                model=self.conversation.model,
                system=self.conversation.system,
                temperature=self.conversation.temperature,
                max_tokens=self.conversation.max_tokens,
            )
        )
        self.status("new conversation")

    def read_settings_quietly(self) -> None:
        try:
            self.read_settings()
        except SettingsError:
            pass
