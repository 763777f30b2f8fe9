"""The console's configuration editor: show, validate and write back cache definitions.

The file is read *as written* (never interpolated), so ``${VAR}`` references are shown
and written back as references and a resolved secret can never reach the file or a page.
Literal secrets already in the file are shown masked; a submitted value equal to what
was shown keeps the stored value, and an edited URL keeps its masked credentials while
its scheme and host stay, so saving a form never replaces a password by ``*****``. An
entry is validated by the loader's own code (:func:`~cachehub.loader.parse_entry`, the
provider's settings schema with its "did you mean", the default and namespace rules of
the registry) before the file is replaced atomically, with every other part of the
document (other caches, other server settings) kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ..api import BASE_OPTIONS
from ..config import Option, canonical_settings, redact, validate_settings
from ..errors import ConfigError, MissingEnvVarError
from ..loader import (
    _entries_of,
    check_namespaces,
    default_entry,
    load_file,
    parse_entry,
    parse_json,
    referenced_variables,
)
from ..registry import backend_place, provider_settings
from ..resolve import resolve_provider
from ..scrub import SECRET_MASK, unmask

__all__ = ["ConfigFile", "EditableEntry", "MAX_CUSTOM_CHARS"]

MAX_CUSTOM_CHARS: Final = 64 * 1024
"""Longest ``custom`` JSON text the editor accepts."""

_REFERENCE: Final = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[^${}]*)?\}")
"""A whole value that is one ``${VAR}`` (or ``${VAR:-plain fallback}``) reference."""


@dataclass(frozen=True)
class EditableEntry:
    """A cache definition as the editor shows it (secrets masked, references kept)."""

    name: str
    class_name: str
    package: str
    custom_text: str
    read_only: bool
    default: bool
    storage: bool
    version: str = ""
    """A digest of the definition as written: a save of a form showing another version
    is refused (the file changed since the form was opened)."""


def entry_version(raw: Mapping[str, Any]) -> str:
    """The version of a definition as the file holds it (secrets included, never shown:
    a digest)."""
    text = json.dumps(raw, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


_SAVING: Final = threading.Lock()
"""One save at a time in this process (see :meth:`ConfigFile.save`)."""


def _alike(names: list[str]) -> ConfigError:
    shown = " and ".join(f"'{n}'" for n in names[:2])
    return ConfigError(
        f"the configuration names caches {shown}, which differ only in case (cache names "
        "are case-insensitive: they are one cache).",
        hint="rename or remove one of them in the file, then reload this page.",
    )


def _options(class_name: str) -> tuple[Option, ...]:
    try:
        provider = resolve_provider(class_name)
    except ConfigError:
        return tuple(BASE_OPTIONS)
    return (*BASE_OPTIONS, *provider.options)


def _shown_custom(custom: Mapping[str, Any], class_name: str) -> dict[str, Any]:
    """``custom`` safe to show: secrets and URL passwords masked, references as written
    (at any depth: a dict or list under a setting is shown as a setting is)."""
    shown: dict[str, Any] = _references_kept(custom, redact(dict(custom), _options(class_name)))
    return shown


def _references_kept(written: Any, shown: Any) -> Any:
    """``shown`` (the redacted ``written``) with every whole ``${VAR}`` value as written:
    a reference names a variable; it holds no secret."""
    if isinstance(written, str) and _REFERENCE.fullmatch(written):
        return written
    if isinstance(written, Mapping) and isinstance(shown, dict):
        return {k: _references_kept(written[k], v) if k in written else v for k, v in shown.items()}
    if isinstance(written, (list, tuple)) and isinstance(shown, (list, tuple)):
        return type(shown)(_references_kept(w, v) for w, v in zip(written, shown, strict=True))
    return shown  # redact's depth cap shows a whole subtree as one mask


def _flag(raw: Mapping[str, Any], name: str) -> bool:
    value = next((v for k, v in raw.items() if str(k).lower() == name.lower()), False)
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false")
    return bool(value)


def _field(raw: Mapping[str, Any], name: str) -> tuple[str | None, Any]:
    """The key spelling and value of entry field ``name`` (any case), or (None, None)."""
    for key, value in raw.items():
        if str(key).lower() == name.lower():
            return str(key), value
    return None, None


class ConfigFile:
    """The configuration file the console edits."""

    def __init__(self, path: Path, environ: Mapping[str, str] | None = None) -> None:
        self.path = path
        self._environ = environ

    # ------------------------------------------------------------------ reading

    def _target(self) -> Path:
        """The file reads and writes go to: the path itself, or the file a link names.

        Deployments often link the configuration to a mounted config or secret volume;
        writing through keeps the link (a rename over the link would replace it by a
        regular file the volume never sees). A link that leads nowhere (dangling, or a
        loop) is refused rather than replaced: an empty editor over a missing mount
        would otherwise save a one-cache file in the link's place.
        """
        if not self.path.is_symlink():
            return self.path
        try:
            return Path(os.path.realpath(self.path, strict=True))
        except (OSError, RuntimeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ConfigError(
                f"configuration file {self.path} is a symbolic link that leads to no file "
                f"({reason}).",
                hint="point the link at the configuration file (is its volume mounted?), "
                "or replace the link by the file itself.",
            ) from None

    def _document(self) -> dict[str, Any]:
        target = self._target()
        if not target.exists():
            return {}
        return load_file(target)

    @staticmethod
    def _block(doc: dict[str, Any]) -> dict[str, Any]:
        block = _entries_of(doc)
        if not isinstance(block, dict):  # json.loads only makes dicts; be explicit
            raise ConfigError("the configuration's cache block is not a JSON object.")
        return block

    def entries(self) -> list[EditableEntry]:
        """Every cache definition of the file, as written, secrets masked."""
        return [self._editable(name, raw) for name, raw in self._raw_entries().items()]

    def entry(self, name: str) -> EditableEntry | None:
        """The definition of cache ``name`` (case-insensitive), or None; ConfigError when
        the file spells two caches alike (which one to show, or save, is not known)."""
        found = [key for key in self._raw_entries() if key.lower() == name.lower()]
        if len(found) > 1:
            raise _alike(found)
        return self._editable(found[0], self._raw_entries()[found[0]]) if found else None

    def _raw_entries(self) -> dict[str, Mapping[str, Any]]:
        block = self._block(self._document())
        return {str(k): v for k, v in block.items() if isinstance(v, Mapping)}

    def _editable(self, name: str, raw: Mapping[str, Any]) -> EditableEntry:
        _, class_name = _field(raw, "class")
        _, custom = _field(raw, "custom")
        _, package = _field(raw, "package")
        class_text = class_name if isinstance(class_name, str) else ""
        custom_map = custom if isinstance(custom, Mapping) else {}
        return EditableEntry(
            name=name,
            class_name=class_text,
            package=redact(package) if isinstance(package, str) else "",
            custom_text=json.dumps(
                _shown_custom(custom_map, class_text), indent=2, ensure_ascii=False
            ),
            read_only=_flag(raw, "readOnly"),
            default=_flag(raw, "default"),
            storage=_flag(raw, "storage"),
            version=entry_version(raw),
        )

    # ------------------------------------------------------------------ writing

    def save(
        self,
        *,
        original: str | None,
        name: str,
        class_name: str,
        custom_text: str,
        package: str = "",
        read_only: bool = False,
        default: bool = False,
        storage: bool = False,
        version: str | None = None,
    ) -> list[str]:
        """Validate and write the definition of cache ``name``; returns warnings.

        ``original`` is the name being edited (None: a new cache) and ``version`` its
        :func:`entry_version` when the form was opened (None: not checked). Raises
        :class:`ConfigError` naming the problem (with "did you mean" for misspelt
        settings) and changes nothing when the definition is invalid, or when the file
        changed the definition since the form showed it. Saves of one console run one
        at a time: read, merge and write, with nothing between (two forms saved at once
        each lost the other's cache).
        """
        with _SAVING:
            return self._save(
                original,
                name,
                class_name,
                custom_text,
                package,
                read_only,
                default,
                storage,
                version,
            )

    def _save(
        self,
        original: str | None,
        name: str,
        class_name: str,
        custom_text: str,
        package: str,
        read_only: bool,
        default: bool,
        storage: bool,
        version: str | None,
    ) -> list[str]:
        name = name.strip()
        if not name:
            raise ConfigError("the cache needs a name.", hint="type a name, e.g. 'sessions'.")
        if len(name) > 200:
            raise ConfigError(
                f"a cache name of {len(name)} characters is too long.",
                hint="use a name of at most 200 characters.",
            )
        custom = self._parse_custom(custom_text)
        doc = self._document()
        block = self._block(doc)
        known = referenced_variables(block)  # before this edit: the file's author's choice
        folded: dict[str, str] = {}
        for key in block:
            if key.lower() in folded:  # the registry refuses such a file: so does the editor
                raise _alike([folded[key.lower()], key])
            folded[key.lower()] = key
        old_key = folded.get(original.lower()) if original else None
        if original and old_key is None:
            raise ConfigError(
                f"cache '{original}' is no longer in {self.path.name}.",
                hint="reload the configuration page; the file changed meanwhile.",
            )
        if old_key is not None and version is not None:
            current = block[old_key]
            if not isinstance(current, Mapping) or entry_version(current) != version:
                raise ConfigError(
                    f"cache '{old_key}' changed in {self.path.name} since this form was "
                    "opened; saving would undo that change.",
                    hint="open the cache again from the configuration page and redo the edit.",
                )
        clash = folded.get(name.lower())
        if clash is not None and clash != old_key:
            raise ConfigError(
                f"a cache named '{clash}' is already configured.",
                hint="pick another name (cache names are case-insensitive).",
            )
        old_raw: Mapping[str, Any] = block.get(old_key, {}) if old_key else {}
        raw = self._merged(old_raw, class_name, custom, package, read_only, default, storage)
        self._refuse_new_variables(raw, known)
        warnings = self._validate(name, raw)
        new_block: dict[str, Any] = {}
        for key, value in block.items():  # keep the order: the edited entry stays in place
            if key == old_key:
                new_block[name] = raw
            else:
                new_block[key] = value
        if old_key is None:
            new_block[name] = raw
        self._check_together(new_block)
        block.clear()
        block.update(new_block)
        self._write(doc)
        return warnings

    def _refuse_new_variables(self, raw: Mapping[str, Any], known: set[str]) -> None:
        """Refuse ``${VAR}`` references to variables the file does not reference yet.

        Masking what the console shows cannot keep a variable's value from whoever holds
        the token once they may reference it: as the namespace of a cache sharing its
        store with one that has none, it is listed among that cache's keys; whether
        another namespace nests in it answers "does it start with ...?" one character
        at a time; as a host, it is sent to a server of their choosing. So the console
        may use and move the variables the file's author referenced, never others.
        """
        added = sorted(referenced_variables(raw) - known)
        if added:
            names = ", ".join(added[:5]) + (f" and {len(added) - 5} more" if len(added) > 5 else "")
            raise ConfigError(
                f"the definition references the environment variable(s) {names}, which "
                f"{self.path.name} does not reference yet; the console only uses variables "
                "the file already names, since a reference could reveal the console's "
                "environment to anyone holding its token.",
                hint="type the value itself, or add the reference to the file with a text "
                "editor (then the console keeps it).",
            )

    @staticmethod
    def _parse_custom(text: str) -> dict[str, Any]:
        if len(text) > MAX_CUSTOM_CHARS:
            raise ConfigError(
                f"the settings are {len(text):,} characters long; at most "
                f"{MAX_CUSTOM_CHARS:,} are accepted.",
                hint="cache settings need a few lines; remove what does not belong there.",
            )
        if not text.strip():
            return {}
        value = parse_json(
            text,
            "the settings text",
            'write a JSON object, e.g. {"host": "localhost", "port": 6379}.',
            ConfigError,
        )
        if not isinstance(value, dict):
            raise ConfigError(
                f"the settings must be a JSON object, got {type(value).__name__}.",
                hint='write {"setting": value, ...}.',
            )
        return value

    @staticmethod
    def _merged(
        old_raw: Mapping[str, Any],
        class_name: str,
        custom: dict[str, Any],
        package: str,
        read_only: bool,
        default: bool,
        storage: bool,
    ) -> dict[str, Any]:
        """The new raw entry: the form's fields over the old entry's other keys."""
        _, old_custom = _field(old_raw, "custom")
        _, old_class = _field(old_raw, "class")
        _, old_package = _field(old_raw, "package")
        if isinstance(old_custom, Mapping):
            shown = _shown_custom(old_custom, str(old_class or ""))
            for key, value in list(custom.items()):
                if key in old_custom and key in shown:
                    custom[key] = ConfigFile._restored(key, value, shown[key], old_custom[key])
                else:
                    ConfigFile._refuse_mask(key, value)
        else:
            for key, value in custom.items():
                ConfigFile._refuse_mask(key, value)
        if isinstance(old_package, str) and package == redact(old_package):
            package = old_package
        edited = {"class", "custom", "package", "readonly", "default", "storage"}
        raw: dict[str, Any] = {"class": class_name.strip()}
        if package.strip():
            raw["package"] = package.strip()
        raw["custom"] = custom
        if read_only:
            raw["readOnly"] = True
        if storage:
            raw["storage"] = True
        if default:
            raw["default"] = True
        for key, value in old_raw.items():
            if str(key).lower() not in edited and camel(str(key)) not in edited:
                raw[str(key)] = value  # keys the form does not edit (e.g. Lucee's maven)
        return raw

    @staticmethod
    def _restored(where: str, value: Any, shown: Any, old: Any) -> Any:
        """The value to save for a setting (or a part of one, at ``where``) the form
        showed as ``shown`` and the file holds as ``old``.

        One rule at every depth: a value that comes back as it was shown keeps what the
        file holds (a masked secret, a scrubbed URL); a dict or a list is matched key by
        key and index by index, so an edit elsewhere in it keeps its masked parts; an
        edited string that was shown masked goes through :meth:`_unmasked`; a mask
        anywhere else (pasted into another key or a new list element, or typed) is
        refused, since it would be saved as the secret itself.
        """
        if value == shown:
            return old
        if isinstance(value, dict) and isinstance(shown, dict) and isinstance(old, Mapping):
            return {
                k: (
                    ConfigFile._restored(f"{where}.{k}", v, shown[k], old[k])
                    if k in shown and k in old
                    else ConfigFile._refuse_mask(f"{where}.{k}", v)
                )
                for k, v in value.items()
            }
        if (
            isinstance(value, list)
            and isinstance(shown, (list, tuple))
            and isinstance(old, (list, tuple))
            and len(shown) == len(old)
        ):
            return [
                (
                    ConfigFile._restored(f"{where}[{i}]", v, shown[i], old[i])
                    if i < len(shown)
                    else ConfigFile._refuse_mask(f"{where}[{i}]", v)
                )
                for i, v in enumerate(value)
            ]
        if isinstance(value, str) and SECRET_MASK in str(shown):
            return ConfigFile._unmasked(where, value, old)
        return ConfigFile._refuse_mask(where, value)

    @staticmethod
    def _refuse_mask(where: str, value: Any) -> Any:
        """``value``, a part the form did not show masked: refused when it holds a mask,
        which could only be a secret pasted from elsewhere or a literal the console cannot
        tell from its own mask."""
        if SECRET_MASK in json.dumps(value, ensure_ascii=False):
            raise ConfigError(
                f"setting '{where}' holds {SECRET_MASK}, the console's mask of a secret, "
                "where the file has no secret to put back (it was pasted from another "
                "setting or typed).",
                hint="type the secret itself, or write a ${VAR} reference to it; a value "
                f"that really contains {SECRET_MASK} can only be written in the file.",
            )
        return value

    @staticmethod
    def _unmasked(key: str, value: str, old: Any) -> str:
        """An edited setting that was shown masked: a URL whose credentials stay where they
        were gets them back (:func:`~cachehub.scrub.unmask`); a mask left anywhere else
        would be saved as the secret itself, so it is refused."""
        restored = unmask(value, old) if isinstance(old, str) else None
        if restored is None and SECRET_MASK in value:
            raise ConfigError(
                f"setting '{key}' still holds {SECRET_MASK} where the file has a secret, and "
                "it can no longer be told which secret it stands for (the host or scheme "
                "changed, or the mask moved).",
                hint="type the secret again, or write a ${VAR} reference to it.",
            )
        return value if restored is None else restored

    def _validate(self, name: str, raw: dict[str, Any]) -> list[str]:
        """Check one entry as the loader and the provider would; returns warnings."""
        where = f"cache '{name}'"
        entry = parse_entry(name, raw, source=self.path.name, environ=self._environ)
        provider = resolve_provider(entry.class_name)
        options = (*BASE_OPTIONS, *provider.options)
        warnings: list[str] = []
        if entry.problem is None:
            validate_settings(
                provider_settings(entry, provider, warn=False),
                options,
                where=f"{where} ({provider.__name__})",
                lucee_options=provider.lucee_options,
                warn=False,
            )
        else:
            # An unset ${VAR}: the values cannot be checked here, the names can.
            canonical_settings(
                dict(raw.get("custom", {})),
                options,
                provider.lucee_options,
                where=where,
                warn=False,
            )
            problem = entry.problem
            detail = problem.message if isinstance(problem, MissingEnvVarError) else str(problem)
            warnings.append(f"saved as written, but not usable in this console: {detail}")
        return warnings

    def _check_together(self, block: dict[str, Any]) -> None:
        """The registry's rules across entries: one default, no nesting namespaces."""
        entries = {
            key: parse_entry(key, value, source=self.path.name, environ=self._environ)
            for key, value in block.items()
            if isinstance(value, Mapping)
        }
        default_entry(entries)
        check_namespaces(entries, backend_place)

    def _write(self, doc: dict[str, Any]) -> None:
        """Replace the file atomically (same directory, fsync, rename), keeping its mode.

        Through a symbolic link the link's target is replaced (in the target's directory,
        so the rename stays atomic on the target's volume) and the link is kept.
        """
        text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
        target = self._target()
        shown = str(self.path) if target == self.path else f"{self.path} (linked to {target})"
        try:
            mode = target.stat().st_mode & 0o777 if target.exists() else 0o600
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        except OSError as exc:
            raise ConfigError(
                f"cannot write {shown}: {exc.strerror}.",
                hint="check that the console may write to the file's directory "
                "(a read-only mounted volume cannot be edited from the console).",
            ) from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise ConfigError(
                f"cannot write {shown}: {exc.strerror}.",
                hint="check the disk space and the file's permissions.",
            ) from None


def camel(name: str) -> str:
    """``read_only`` -> ``readonly`` (lower-case, underscores dropped) for field matching."""
    return name.replace("_", "").lower()
