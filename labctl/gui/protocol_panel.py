"""Protocol panel: choose a protocol (embedded or file), edit its settings with validation, run control.

The parameter form is generated from the protocol kind's pydantic ``settings_model``: one field
per setting (a check box for booleans, a list for literal choices, a line edit otherwise, parsed
as JSON so that numbers, lists, ``true``/``false`` and ``null`` work; empty means ``None``).
Every edit validates the whole settings table with the model; each error is shown beside its
field in the words of ``labctl``'s configuration errors (e.g. "expected a number at least 1 (got
0)"), errors of the table as a whole below the form, and Start stays disabled while any remain.
Once the window tells the panel its station (``set_station``), valid settings are also checked
against the station's envelope (``ChipProtocol.envelope_problems``, as ``labctl run`` does before
anything opens): a pulse setting outside it is marked on its field and Start stays disabled.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from PyQt5.QtCore import Qt, pyqtSignal
from PyQt5.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QGridLayout, QGroupBox, QHBoxLayout, QLabel,
                             QLineEdit, QPushButton, QScrollArea, QVBoxLayout, QWidget)

from labctl import families
from labctl.config import ConfigError, ProtocolFile, StationConfig, _describe, embedded_names, load_protocol_file
from labctl.station import envelope_of

ERROR_STYLE = "color: #c00000;"
HINT_STYLE = "color: #707070;"
OPEN_FILE = "Open protocol file\u2026"


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    """(annotation without None, whether None is allowed)."""
    if typing.get_origin(annotation) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _bounds(info) -> str:
    words = {"gt": ">", "ge": "\u2265", "lt": "<", "le": "\u2264", "min_length": "length \u2265",
             "max_length": "length \u2264"}
    parts = []
    for m in info.metadata:
        for attr, sym in words.items():
            v = getattr(m, attr, None)
            if v is not None:
                parts.append(f"{sym} {v:g}" if isinstance(v, float) else f"{sym} {v}")
    return ", ".join(parts)


def _to_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return repr(value)
    return json.dumps(value)


class FieldEditor:
    """One setting: its widget, the error label beside it, and the parsed value."""

    def __init__(self, name: str, info, value: Any):
        self.name, self.info = name, info
        self.annotation, self.optional = _strip_optional(info.annotation)
        self.choices = None
        if self.annotation is bool:
            self.widget = QCheckBox()
            self.widget.setChecked(bool(value))
        elif typing.get_origin(self.annotation) is typing.Literal:
            self.choices = list(typing.get_args(self.annotation))
            self.widget = QComboBox()
            self.widget.addItems([str(c) for c in self.choices])
            if value in self.choices:
                self.widget.setCurrentIndex(self.choices.index(value))
        else:
            self.widget = QLineEdit(_to_text(value))
            self.widget.setMinimumWidth(90)
        tip = info.description or ""
        bounds = _bounds(info)
        self.hint = bounds
        self.widget.setToolTip(f"{name}: {tip}" + (f" ({bounds})" if bounds else ""))
        self.widget.setObjectName(f"setting_{name}")
        self.error = QLabel(bounds)
        self.error.setObjectName(f"error_{name}")
        self.error.setWordWrap(True)
        self.error.setStyleSheet(HINT_STYLE)
        self.error.setTextInteractionFlags(Qt.TextSelectableByMouse)

    def connect(self, slot) -> None:
        w = self.widget
        if isinstance(w, QCheckBox):
            w.stateChanged.connect(slot)
        elif isinstance(w, QComboBox):
            w.currentIndexChanged.connect(slot)
        else:
            w.textChanged.connect(slot)

    def set_text(self, text: str) -> None:
        """Set the editor's value as typed text (for scripts and tests)."""
        w = self.widget
        if isinstance(w, QCheckBox):
            w.setChecked(text.strip().lower() in ("1", "true", "yes"))
        elif isinstance(w, QComboBox):
            w.setCurrentText(text)
        else:
            w.setText(text)

    def value(self) -> Any:
        w = self.widget
        if isinstance(w, QCheckBox):
            return w.isChecked()
        if isinstance(w, QComboBox):
            return self.choices[w.currentIndex()]
        text = w.text().strip()
        if text == "":
            return None
        if self.annotation is str:
            return w.text()
        try:
            return json.loads(text)
        except ValueError:
            return text  # not a number or list: the model's error says what was expected

    def show_error(self, message: str | None) -> None:
        if message:
            self.error.setText(message)
            self.error.setStyleSheet(ERROR_STYLE)
            if isinstance(self.widget, QLineEdit):
                self.widget.setStyleSheet("border: 1px solid #c00000;")
        else:
            self.error.setText(self.hint)
            self.error.setStyleSheet(HINT_STYLE)
            if isinstance(self.widget, QLineEdit):
                self.widget.setStyleSheet("")


class ProtocolPanel(QGroupBox):
    """See module docstring. Signals: ``protocol_changed(ProtocolFile)``, ``start_clicked()``, and the
    run-control buttons' ``pause/resume/stop/abort_clicked()``."""

    protocol_changed = pyqtSignal(object)
    start_clicked = pyqtSignal()
    pause_clicked = pyqtSignal()
    resume_clicked = pyqtSignal()
    stop_clicked = pyqtSignal()
    abort_clicked = pyqtSignal()

    def __init__(self, parent=None):
        super().__init__("Protocol", parent)
        from protocols import REGISTRY

        self.registry = REGISTRY
        self.pfile: ProtocolFile | None = None
        self.source = ""
        self.model: type[BaseModel] | None = None
        self.protocol_cls = None
        self.station: StationConfig | None = None
        self.editors: dict[str, FieldEditor] = {}
        self.errors: dict[str, str] = {}
        self.running = False

        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        self.choice = QComboBox()
        self.choice.setObjectName("protocol_choice")
        self.choice.addItems(embedded_names("protocols"))
        self.choice.addItem(OPEN_FILE)
        row.addWidget(QLabel("protocol"))
        row.addWidget(self.choice, 1)
        lay.addLayout(row)
        self.description = QLabel("")
        self.description.setWordWrap(True)
        self.description.setStyleSheet(HINT_STYLE)
        lay.addWidget(self.description)

        head = QGridLayout()
        self.seed = QLineEdit("0")
        self.seed.setObjectName("seed")
        self.seed_error = QLabel("integer \u2265 0")
        self.seed_error.setStyleSheet(HINT_STYLE)
        self.out = QLineEdit("")
        self.out.setObjectName("out")
        self.out.setPlaceholderText("runs/<time>-<protocol>.h5")
        self.out_error = QLabel("")
        self.out_error.setStyleSheet(HINT_STYLE)
        head.addWidget(QLabel("seed"), 0, 0)
        head.addWidget(self.seed, 0, 1)
        head.addWidget(self.seed_error, 0, 2)
        head.addWidget(QLabel("run file"), 1, 0)
        head.addWidget(self.out, 1, 1)
        head.addWidget(self.out_error, 1, 2)
        lay.addLayout(head)

        self.form_host = QWidget()
        self.form = QGridLayout(self.form_host)
        self.form.setColumnStretch(2, 1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.form_host)
        lay.addWidget(scroll, 1)
        self.form_error = QLabel("")
        self.form_error.setObjectName("form_error")
        self.form_error.setWordWrap(True)
        self.form_error.setStyleSheet(ERROR_STYLE)
        lay.addWidget(self.form_error)

        buttons = QHBoxLayout()
        self.buttons: dict[str, QPushButton] = {}
        for name, signal in (("Start", self.start_clicked), ("Pause", self.pause_clicked),
                             ("Resume", self.resume_clicked), ("Stop", self.stop_clicked),
                             ("Abort", self.abort_clicked)):
            b = QPushButton(name)
            b.setObjectName(f"button_{name.lower()}")
            b.clicked.connect(signal.emit)
            buttons.addWidget(b)
            self.buttons[name.lower()] = b
        self.buttons["abort"].setStyleSheet("color: #c00000; font-weight: bold;")
        lay.addLayout(buttons)
        self.status = QLabel("")
        self.status.setObjectName("run_status")
        self.status.setWordWrap(True)
        self.status.setFixedHeight(3 * self.status.fontMetrics().lineSpacing() + 6)  # no relayout per update
        lay.addWidget(self.status)

        self.seed.textChanged.connect(self.validate)
        self.choice.currentTextChanged.connect(self._chosen)
        default = "train-meanvar" if "train-meanvar" in embedded_names("protocols") else self.choice.itemText(0)
        self.choice.setCurrentText(default)
        self._chosen(default)

    # ------------------------------------------------------------------ choosing a protocol
    def _chosen(self, text: str) -> None:
        if text == OPEN_FILE:
            path, _ = QFileDialog.getOpenFileName(self, "Open protocol file", "", "Protocol files (*.toml)")
            if path:
                self.load(path)
            return
        self.load(text)

    def load(self, ref: str) -> bool:
        """Load a protocol file (path or embedded name) into the form; False (message shown) if bad."""
        try:
            pfile, source = load_protocol_file(ref)
        except ConfigError as exc:
            self.form_error.setText(str(exc))
            return False
        cls = self.registry.get(pfile.protocol.kind)
        if cls is None:
            self.form_error.setText(f"{source}: key 'protocol.kind': expected one of {sorted(self.registry)} "
                                    f"(got {pfile.protocol.kind!r})")
            return False
        if Path(ref).suffix == ".toml" and self.choice.findText(ref) < 0:
            self.choice.blockSignals(True)
            self.choice.insertItem(self.choice.count() - 1, ref)
            self.choice.setCurrentText(ref)
            self.choice.blockSignals(False)
        self.pfile, self.source, self.model, self.protocol_cls = pfile, source, cls.settings_model, cls
        self.description.setText(f"[{pfile.protocol.kind}] {pfile.protocol.description}")
        self.seed.setText(str(pfile.protocol.seed))
        self._build_form(pfile.settings)
        self.protocol_changed.emit(pfile)
        return True

    def _build_form(self, values: dict) -> None:
        while self.form.count():
            item = self.form.takeAt(0)
            widget = item.widget()
            if widget is not None:
                widget.hide()
                widget.setParent(None)
                widget.deleteLater()
        self.editors = {}
        for row, (name, info) in enumerate(self.model.model_fields.items()):
            value = values.get(name, info.get_default(call_default_factory=True))
            ed = FieldEditor(name, info, value)
            label = QLabel(name)
            label.setToolTip(ed.widget.toolTip())
            self.form.addWidget(label, row, 0)
            self.form.addWidget(ed.widget, row, 1)
            self.form.addWidget(ed.error, row, 2)
            ed.connect(self.validate)
            self.editors[name] = ed
        unknown = sorted(set(values) - set(self.editors))
        self.unknown = unknown
        self.validate()

    # ------------------------------------------------------------------ validation
    def set_station(self, station: StationConfig | None) -> None:
        """The station the protocol will run on: its envelope is checked on every edit (None: no check)."""
        self.station = station
        self.validate()

    def _envelope_errors(self, settings) -> list[str]:
        """Mark the fields whose pulses leave the station's envelope; return the general lines."""
        station, cls = self.station, self.protocol_cls
        if station is None or cls is None:
            return []
        if families.get(station.chip.family).name not in cls.families:
            return [f"{cls.kind} runs on {', '.join(cls.families)} chips, but station {station.station.name} has a "
                    f"{station.chip.family} chip"]
        general = []
        for problem in cls.envelope_problems(settings, envelope_of(station)):
            field = problem.key.removeprefix("settings.")
            text = str(problem).split(": ", 1)[1] + f" (station {station.station.name})"
            if field in self.editors:
                self.errors.setdefault(field, text)
            else:
                general.append(str(problem))
        return general

    def settings_values(self) -> dict[str, Any]:
        return {name: ed.value() for name, ed in self.editors.items()}

    def validate(self, *_) -> bool:
        """Validate every field; show each error beside its field. True if all is well."""
        self.errors = {}
        general: list[str] = []
        if self.model is None:
            return False
        if getattr(self, "unknown", None):
            general.append(f"{self.source}: key 'settings.{self.unknown[0]}': unknown key (not a setting of this "
                           f"protocol; it is ignored here)")
        try:
            settings = self.model.model_validate(self.settings_values())
        except ValidationError as exc:
            for err in exc.errors():
                text = _describe(err, self.model, "").replace("expected input should be ", "expected ")
                field = str(err["loc"][0]) if err["loc"] else None
                if field in self.editors:
                    self.errors.setdefault(field, text.split(": ", 1)[1] if text.startswith("key '") else text)
                else:
                    general.append(text.split(": ", 1)[1] if text.startswith("key '(top level)'") else text)
        else:
            general += self._envelope_errors(settings)
        for name, ed in self.editors.items():
            ed.show_error(self.errors.get(name))
        text = self.seed.text().strip()
        seed_ok = text.isascii() and text.isdigit() and int(text) < 2**63
        self.seed_error.setText("integer \u2265 0" if seed_ok else
                                f"expected an integer at least 0 and below 2**63 (got {text[:30]!r})")
        self.seed_error.setStyleSheet(HINT_STYLE if seed_ok else ERROR_STYLE)
        if not seed_ok:
            self.errors["seed"] = self.seed_error.text()
        self.form_error.setText("\n".join(general))
        ok = not self.errors and not any(not g.endswith("it is ignored here)") for g in general)
        self.set_running_state("running" if self.running else "idle", valid=ok)
        return ok

    def request(self) -> tuple[ProtocolFile, str, int, str] | None:
        """(protocol file with the edited settings, source label, seed, run-file path or '') or None."""
        if self.pfile is None or not self.validate():
            return None
        settings = self.model.model_validate(self.settings_values()).model_dump(mode="json")
        data = self.pfile.model_dump()
        data["settings"] = settings
        data["protocol"]["seed"] = int(self.seed.text())
        return ProtocolFile.model_validate(data), self.source, int(self.seed.text()), self.out.text().strip()

    # ------------------------------------------------------------------ run state
    def set_running_state(self, state: str, valid: bool | None = None) -> None:
        """Enable the buttons that make sense: state is idle, running, paused or done."""
        if valid is None:
            valid = not self.errors
        self.running = state in ("running", "paused", "starting")
        b = self.buttons
        b["start"].setEnabled(not self.running and valid)
        b["pause"].setEnabled(state == "running")
        b["resume"].setEnabled(state == "paused")
        b["stop"].setEnabled(state in ("running", "paused"))
        b["abort"].setEnabled(state in ("running", "paused", "starting"))
        self.choice.setEnabled(not self.running)
        self.form_host.setEnabled(not self.running)
