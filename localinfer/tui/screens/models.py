"""Models: the catalog and the server's cache side by side; download, load, unload.

Everything comes from the server (``/v1/catalog``, ``/v1/cache``, ``/v1/models``), so the
cache shown is the server's, wherever it runs. Downloads follow the server's progress
events in a worker; ``x`` cancels the download on the server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Input, Label, ProgressBar, Select, Static

from localinfer import errors as e
from localinfer.client import CachedModel, CatalogEntry, Download
from localinfer.client.progress import describe
from localinfer.tui.screens.base import AppScreen
from localinfer.tui.widgets import units
from localinfer.tui.widgets.prompt import TextPrompt
from localinfer.tui.widgets.topbar import TopBar

SERVER_DEFAULT = "default"


@dataclass
class Inventory:
    """What the tables show, as last read from the server."""

    catalog: tuple[CatalogEntry, ...] = ()
    cache: tuple[CachedModel, ...] = ()
    loaded: set[str] = field(default_factory=set)
    devices: tuple[str, ...] = ()

    def cached_size(self, repo: str) -> int | None:
        return next((m.size_bytes for m in self.cache if m.id == repo), None)

    def is_loaded(self, entry: CatalogEntry) -> bool:
        return entry.loaded or entry.id in self.loaded

    def loaded_name(self, repo: str) -> str | None:
        """The name ``repo`` serves under: its repo id, or the alias it was loaded by."""
        if repo in self.loaded:
            return repo
        return next((c.id for c in self.catalog if c.repo == repo and self.is_loaded(c)), None)


def _state(loaded: bool, cached: bool) -> Text:
    if loaded:
        return Text("loaded", style="bold green")
    return Text("cached", style="cyan") if cached else Text("")


def _matches(words: list[str], *fields: str) -> bool:
    text = " ".join(fields).lower()
    return all(word in text for word in words)


class ModelsScreen(AppScreen):
    """Catalog and cache tables, a filter, a device choice and the download bar."""

    DEFAULT_CSS = """
    ModelsScreen #toolbar { height: 1; margin: 1 0 0 0; }
    ModelsScreen #filter { width: 1fr; margin: 0 1; }
    ModelsScreen #device-label { width: auto; padding: 0 1; }
    ModelsScreen #device { width: 22; }
    ModelsScreen #tables { height: 1fr; layout: vertical; }
    ModelsScreen #tables > Vertical { height: 1fr; }
    ModelsScreen.-side-by-side #tables { layout: horizontal; }
    ModelsScreen.-side-by-side #catalog-pane { width: 3fr; }
    ModelsScreen.-side-by-side #cache-pane { width: 2fr; }
    ModelsScreen DataTable { height: 1fr; }
    ModelsScreen #download { height: 1; padding: 0 1; }
    ModelsScreen #download-label { width: 1fr; }
    ModelsScreen #download-bar { width: auto; display: none; }
    """
    #: side by side once both tables fit whole (a repo id is up to ~40 cells), else stacked
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [  # type: ignore[misc]
        (0, "-stacked"),
        (160, "-side-by-side"),
    ]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "focus_filter", "Filter"),
        Binding("d", "download", "Download"),
        Binding("x", "cancel_download", "Cancel"),
        Binding("l", "load", "Load"),
        Binding("u", "unload", "Unload"),
        Binding("r", "refresh", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.inventory = Inventory()
        self.download: Download | None = None
        self._last_table = "catalog"

    def compose(self) -> ComposeResult:
        yield TopBar("models")
        with Horizontal(id="toolbar"):
            yield Input(placeholder="/ filter: alias, repo or task", id="filter", compact=True)
            yield Label("load on", id="device-label")
            yield Select(
                [("server default", SERVER_DEFAULT)],
                value=SERVER_DEFAULT,
                allow_blank=False,
                id="device",
                compact=True,
            )
        with Horizontal(id="tables"):
            with Vertical(id="catalog-pane"):
                yield Label("Catalog", classes="section-title")
                yield DataTable(id="catalog", cursor_type="row", zebra_stripes=True)
            with Vertical(id="cache-pane"):
                yield Label("Server cache", classes="section-title")
                yield DataTable(id="cache", cursor_type="row", zebra_stripes=True)
        with Horizontal(id="download"):
            yield Label("d downloads a model to the server", id="download-label")
            yield ProgressBar(id="download-bar", show_eta=False)
        yield Static("", id="status", classes="status")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        catalog = self.query_one("#catalog", DataTable)
        catalog.add_column("alias", key="alias")
        catalog.add_column("task", key="task")
        catalog.add_column("size", key="size")
        catalog.add_column("state", key="state")
        catalog.add_column("repo", key="repo")
        cache = self.query_one("#cache", DataTable)
        cache.add_column("repo", key="repo")
        cache.add_column("size", key="size")
        cache.add_column("files", key="files")
        cache.add_column("state", key="state")
        catalog.focus()
        self.action_refresh()

    # -- reading the server ----------------------------------------------------------------

    def action_refresh(self) -> None:
        self.refresh_inventory()

    @work(exclusive=True, group="inventory", exit_on_error=False)
    async def refresh_inventory(self) -> None:
        client = await self.client()
        catalog = await client.catalog()
        cache = await client.cached_models()
        loaded = await client.models()
        devices = tuple(d.name for d in (await client.stats()).devices)
        self.inventory = Inventory(catalog, cache, set(loaded.names), devices)
        self._fill_tables()
        self._fill_devices()

    def _fill_devices(self) -> None:
        select: Select[str] = self.query_one("#device", Select)
        current = select.value
        options = [("server default", SERVER_DEFAULT)] + [(d, d) for d in self.inventory.devices]
        select.set_options(options)
        select.value = current if current in {v for _, v in options} else SERVER_DEFAULT

    def _fill_tables(self) -> None:
        words = self.query_one("#filter", Input).value.lower().split()
        inventory = self.inventory
        catalog = self.query_one("#catalog", DataTable)
        catalog_rows: list[tuple[object, ...]] = [
            (
                c.id,
                c.task,
                units.size(inventory.cached_size(c.repo)) if c.cached else "",
                _state(inventory.is_loaded(c), c.cached),
                c.repo,
                c.id,
            )
            for c in inventory.catalog
            if _matches(words, c.id, c.repo, c.task, c.description)
        ]
        self._replace_rows(catalog, catalog_rows)
        cache = self.query_one("#cache", DataTable)
        cache_rows: list[tuple[object, ...]] = [
            (
                m.id,
                units.size(m.size_bytes),
                str(m.files),
                _state(m.loaded or inventory.loaded_name(m.id) is not None, False),
                m.id,
            )
            for m in inventory.cache
            if _matches(words, m.id)
        ]
        self._replace_rows(cache, cache_rows)

    @staticmethod
    def _replace_rows(table: DataTable[object], rows: list[tuple[object, ...]]) -> None:
        """New rows, the cursor kept on the same model when it is still listed."""
        selected = _row_key(table)
        table.clear()
        for *cells, key in rows:
            table.add_row(*cells, key=str(key))
        keys = [str(row[-1]) for row in rows]
        if selected in keys:
            table.move_cursor(row=keys.index(selected))

    @on(Input.Changed, "#filter")
    def _filter_changed(self) -> None:
        self._fill_tables()

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.query_one(f"#{self._last_table}", DataTable).focus()

    def action_focus_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    # -- which model -----------------------------------------------------------------------

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id:
            self._last_table = event.data_table.id

    def on_descendant_focus(self) -> None:
        if isinstance(self.focused, DataTable) and self.focused.id:
            self._last_table = self.focused.id

    def selected(self) -> str | None:
        """The highlighted model: a catalog alias, or a repo id from the cache table."""
        return _row_key(self.query_one(f"#{self._last_table}", DataTable))

    def _device(self) -> str | None:
        value = self.query_one("#device", Select).value
        return None if value == SERVER_DEFAULT or not isinstance(value, str) else value

    def status(self, message: str, *, error: bool = False) -> None:
        line = self.query_one("#status", Static)
        line.update(message)
        line.set_class(error, "-error")

    # -- download --------------------------------------------------------------------------

    def action_download(self) -> None:
        if self.download is not None:
            self.notify("a download is already running: x cancels it", severity="warning")
            return
        suggestion = self.selected() or self.query_one("#filter", Input).value.strip()
        prompt = TextPrompt(
            "Download which model to the server's cache?",
            suggestion,
            placeholder="catalog alias or org/name repo id",
        )
        self.app.push_screen(prompt, self._download_chosen)

    async def _download_chosen(self, model: str | None) -> None:
        if model:
            await self.until_current()
            self.pull(model)

    @work(exclusive=True, group="download", exit_on_error=False)
    async def pull(self, model: str) -> None:
        """Download ``model`` on the server, the bar following its progress events."""
        client = await self.client()
        label = self.query_one("#download-label", Label)
        bar = self.query_one("#download-bar", ProgressBar)
        label.update(f"{model}: starting…")
        bar.update(total=None, progress=0)
        bar.display = True
        try:
            done = await client.pull(model, progress=self._progress)
        except e.DownloadCancelled:
            label.update(f"{model}: cancelled")
            self.status(f"download of {model} cancelled")
            return
        except e.LocalInferError as exc:
            label.update(f"{model}: failed")
            self.status(f"download of {model} failed: {exc.message}", error=True)
            raise
        finally:
            self.download = None
        bar.update(total=done.total_bytes or 1, progress=done.total_bytes or 1)
        label.update(f"{model}: downloaded ({units.size(done.total_bytes)})")
        self.status(f"{model} is in the server's cache: l loads it")
        self.refresh_inventory()

    def _progress(self, download: Download) -> None:
        self.download = download
        bar = self.query_one("#download-bar", ProgressBar)
        if download.total_bytes:
            bar.update(total=download.total_bytes, progress=download.downloaded_bytes)
        self.query_one("#download-label", Label).update(describe(download))

    def action_cancel_download(self) -> None:
        if self.download is None or not self.download.id:
            self.notify("no download is running", severity="warning")
            return
        self.cancel(self.download.id)

    @work(group="cancel", exit_on_error=False)
    async def cancel(self, download_id: str) -> None:
        await (await self.client()).cancel_download(download_id)

    # -- load / unload ---------------------------------------------------------------------

    def action_load(self) -> None:
        model = self.selected()
        if model is None:
            self.notify("pick a model in a table first", severity="warning")
            return
        self.load(model, self._device())

    @work(group="load", exit_on_error=False)
    async def load(self, model: str, device: str | None) -> None:
        client = await self.client()
        where = device or "the server's default device"
        self.status(f"loading {model} on {where}…")
        try:
            info = await client.load(model, device=device)
        except e.LocalInferError as exc:
            self.status(f"loading {model} failed: {exc.message}", error=True)
            raise
        self.status(f"{info.id} loaded ({info.task}) on {where}")
        self.refresh_inventory()

    def action_unload(self) -> None:
        model = self.selected()
        if model is None:
            self.notify("pick a model in a table first", severity="warning")
            return
        self.unload(self.inventory.loaded_name(model) or model)

    @work(group="load", exit_on_error=False)
    async def unload(self, model: str) -> None:
        client = await self.client()
        self.status(f"unloading {model}…")
        try:
            await client.unload(model)
        except e.LocalInferError as exc:
            self.status(f"unloading {model} failed: {exc.message}", error=True)
            raise
        self.status(f"{model} unloaded")
        self.refresh_inventory()


def _row_key(table: DataTable[object]) -> str | None:
    if table.row_count == 0:
        return None
    key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
    return None if key is None else str(key)
