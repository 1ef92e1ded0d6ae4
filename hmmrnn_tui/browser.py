"""Pane 1: the model tree (grouped as the study's folders), type-to-filter, and a details panel."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Input, Static, Tree
from textual.widgets.input import Selection
from textual.widgets.tree import TreeNode

from hmmrnn_tui import jobs, render
from hmmrnn_tui.fields import Field
from hmmrnn_tui.panes import Pane


def short_reason(reason: str) -> str:
    """The problem without the file name in front (the details panel shows the whole message)."""
    head, sep, rest = reason.partition(": ")
    return rest if sep and head.endswith((".pth", ".json", ".pt")) else reason


class ModelTree(Tree):
    """The model tree. Typing letters here does nothing: the filter starts with `/`, so a model
    name typed by habit never fires an action. Left and right fold as in a file manager."""

    BINDINGS = [
        Binding("left", "fold", "Fold / to parent", show=False, id="models.fold"),
        Binding("right", "unfold", "Unfold / to child", show=False, id="models.unfold"),
    ]

    def action_fold(self) -> None:
        """Collapse the open folder under the cursor, else move to its parent folder."""
        node = self.cursor_node
        if node is None:
            return
        if node.allow_expand and node.is_expanded:
            node.collapse()
        elif node.parent is not None and node.parent is not self.root:
            self.move_cursor(node.parent)

    def action_unfold(self) -> None:
        """Open the folder under the cursor, else move to its first child."""
        node = self.cursor_node
        if node is None or not node.allow_expand:
            return
        if not node.is_expanded:
            node.expand()
        elif node.children:
            self.move_cursor(node.children[0])


class BrowserPane(Pane):
    TITLE = "Models"
    BINDINGS = [
        Binding("slash", "filter", "Filter", id="models.filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="models.clear_filter"),
        Binding(
            "down", "to_tree", "To the tree", show=False, id="models.to_tree"
        ),  # from the filter
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.entries: list = []
        self.filter_text = ""
        self.details_info: dict = {}  # what the details panel shows (for tests and export)

    def compose(self) -> ComposeResult:
        with Horizontal():
            with Vertical(id="browser-left"):
                yield Field(
                    placeholder="/ filters · esc clears",
                    id="filter",
                    compact=True,
                    select_on_focus=False,
                )
                tree = ModelTree("models", id="models")
                tree.show_root = False
                tree.guide_depth = 2
                yield tree
            with VerticalScroll(id="details-scroll"):
                yield Static("discovering models…", id="details")

    @property
    def tree(self) -> ModelTree:
        return self.query_one("#models", ModelTree)

    def focus_main(self) -> None:
        self.tree.focus()

    # --- tree -------------------------------------------------------------------------------

    def tree_loaded(self, entries: list) -> None:
        self.entries = entries
        self.rebuild()
        if not entries:
            self.query_one("#details", Static).update(
                Text(f"no models under {self.hub.tree_root}", style="yellow")
            )

    def rebuild(self) -> None:
        """Fill the tree with the entries matching the filter, folders expanded."""
        tree = self.tree
        current = self.hub.current
        tree.clear()
        tree.root.expand()
        needle = self.filter_text.lower()
        folders: dict[tuple[str, ...], TreeNode] = {(): tree.root}
        select = None
        for entry in self.entries:
            if needle and needle not in entry.rel.lower():
                continue
            parts = entry.parts or (entry.rel,)
            for depth in range(1, len(parts)):
                key = parts[:depth]
                if key not in folders:
                    folders[key] = folders[key[:-1]].add(parts[depth - 1], expand=True)
            leaf = folders[parts[:-1]].add_leaf(self.leaf_label(entry, parts[-1]), data=entry)
            if select is None or (current is not None and entry.path == current.path):
                select = leaf
        if select is not None:
            self.call_after_refresh(self._cursor_to, select)

    def _cursor_to(self, node: TreeNode) -> None:
        # The highlight event only fires when the cursor line changes, so select explicitly.
        self.tree.move_cursor(node)
        self.hub.select_entry(node.data)

    @staticmethod
    def leaf_label(entry, name: str) -> Text:
        text = Text(
            f"{render.STATUS_MARK.get(entry.status, '?')} ", style=render.STATUS_STYLE[entry.status]
        )
        text.append(name, style="bold red" if entry.status == "broken" else "")
        if entry.status == "broken":
            text.append(f" · {short_reason(entry.reason)}", style="red")
        elif entry.status == "training":
            text.append(" · training", style="yellow")
        elif entry.status == "interrupted":
            text.append(" · interrupted, resumable", style="yellow")
        elif entry.run_status and entry.run_status != "finished" and entry.rel.startswith("Runs/"):
            text.append(f" · {entry.run_status}", style="yellow")
        return text

    @on(Tree.NodeHighlighted, "#models")
    def _highlighted(self, event: Tree.NodeHighlighted) -> None:
        entry = event.node.data
        if entry is not None:
            self.hub.select_entry(entry)

    def model_changed(self, entry) -> None:
        if entry is None:
            return
        self.query_one("#details", Static).update(Text(f"{entry.rel} …", style="dim"))
        self.load_details(entry)

    def load_details(self, entry) -> None:
        from hmmrnn import api

        def read():
            info = api.describe(entry)
            return entry, info, render.model_details(info)

        jobs.fetch(self, "details", read)

    @on(jobs.Fetched)
    def _fetched(self, message: jobs.Fetched) -> None:
        if message.key != "details":
            return
        message.stop()
        if isinstance(message.value, Exception):  # a model that cannot be read is shown
            current = self.hub.current
            name = current.rel if current is not None else "model"
            self.details_info = {"model": name, "status": "broken", "reason": str(message.value)}
            view = render.status_text("broken", str(message.value))
            self.query_one("#details", Static).update(view)
            return
        entry, info, view = message.value
        current = self.hub.current
        if current is not None and current.path != entry.path:
            return  # the selection moved on while this was read
        self.details_info = info
        self.query_one("#details", Static).update(view)

    # --- filter -----------------------------------------------------------------------------

    def field_left(self, field) -> None:
        self.action_clear_filter()

    def action_filter(self) -> None:
        """Focus the filter with its text selected: typing replaces it, → keeps it."""
        box = self.query_one("#filter", Input)
        box.focus()
        box.selection = Selection(0, len(box.value))

    def action_to_tree(self) -> None:
        self.tree.focus()

    def action_clear_filter(self) -> None:
        self.query_one("#filter", Input).value = ""
        self.tree.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self.rebuild()

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.tree.focus()

    def export_targets(self):
        # The tree view's figure: every evaluated model of the tree on one grid.
        return [("grid-distances", None, self.hub.tree_root)]

    def commands(self):
        return [
            (
                "Models: filter",
                "Type part of a model's path to narrow the tree",
                self.action_filter,
            ),
            ("Models: clear filter", "Show every model again", self.action_clear_filter),
        ]
