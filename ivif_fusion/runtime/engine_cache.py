"""The TensorRT engine cache: a folder of engines keyed by everything an engine depends on.

:class:`EngineCache` stores ``<name>-<key digest>.engine`` plus a JSON sidecar holding the
full :class:`EngineKey` (ONNX sha256, TensorRT version, GPU name and compute capability,
precision, profile) and the engine's own sha256. :meth:`EngineCache.get_or_build` reuses a
matching engine, builds a missing one (logging which key fields differ from the engines
already cached for that graph), and treats a corrupt entry (unreadable sidecar, engine
bytes that do not match their recorded sha256, or an engine the runtime cannot
deserialize) by deleting it and rebuilding, logged. The builder and the validator are
injected, so these rules hold (and are tested) without TensorRT; :mod:`.tensorrt_engine`
supplies the real ones.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .onnx_export import ExportError

log = logging.getLogger("ivif_fusion.engine_cache")

PRECISIONS = ("fp16", "fp32")


@dataclass(frozen=True)
class Profile:
    """One TensorRT optimization profile: (N, H, W) for min, opt and max (both inputs share it)."""

    min: tuple[int, int, int] = (1, 64, 64)
    opt: tuple[int, int, int] = (1, 480, 640)
    max: tuple[int, int, int] = (1, 1088, 1920)

    def __post_init__(self) -> None:
        for name in ("min", "opt", "max"):
            v = getattr(self, name)
            if len(v) != 3 or any(int(x) < 1 for x in v):
                raise ExportError(f"profile {name} must be three positive ints (N, H, W), got {v}")
            object.__setattr__(self, name, tuple(int(x) for x in v))
        if not all(a <= b <= c for a, b, c in zip(self.min, self.opt, self.max)):
            raise ExportError(f"profile must satisfy min <= opt <= max per dimension, got "
                              f"min={self.min} opt={self.opt} max={self.max}")

    def shapes(self) -> dict[str, tuple[int, int, int, int]]:
        """NCHW shapes for min/opt/max."""
        return {k: (v[0], 1, v[1], v[2]) for k, v in (("min", self.min), ("opt", self.opt), ("max", self.max))}

    def covers(self, n: int, h: int, w: int) -> bool:
        return all(lo <= x <= hi for lo, x, hi in zip(self.min, (n, h, w), self.max))

    @classmethod
    def parse(cls, text: str) -> tuple[int, int, int]:
        """'1x480x640' (N x H x W) -> (1, 480, 640)."""
        try:
            parts = tuple(int(p) for p in text.lower().split("x"))
        except ValueError:
            parts = ()
        if len(parts) != 3:
            raise ExportError(f"expected NxHxW (e.g. 1x480x640), got '{text}'")
        return parts  # type: ignore[return-value]


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on; any change means a different engine."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    profile: Profile

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ExportError(f"precision must be one of {PRECISIONS}, got '{self.precision}'")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["profile"] = {k: list(v) for k, v in d["profile"].items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> EngineKey:
        p = d["profile"]
        return cls(d["onnx_sha256"], d["tensorrt_version"], d["gpu_name"], d["compute_capability"], d["precision"],
                   Profile(tuple(p["min"]), tuple(p["opt"]), tuple(p["max"])))

    def digest(self) -> str:
        """Short stable id of the key (file name part)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def differences(self, other: EngineKey) -> list[str]:
        """Human-readable fields that differ from ``other`` ('precision fp32 -> fp16')."""
        a, b = other.to_dict(), self.to_dict()
        return [f"{k} {a[k]} -> {b[k]}" for k in b if a[k] != b[k]]


class CorruptEngine(Exception):
    """A cached engine entry cannot be trusted."""


@dataclass
class CacheResult:
    path: Path
    status: str  # "hit" | "built" | "rebuilt-corrupt"
    key: EngineKey
    notes: list[str] = field(default_factory=list)


class EngineCache:
    """Folder of engines keyed by :class:`EngineKey` (see module docstring for the rules)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).expanduser()

    def paths(self, key: EngineKey, name: str = "fusion") -> tuple[Path, Path]:
        stem = f"{name}-{key.digest()}"
        return self.root / f"{stem}.engine", self.root / f"{stem}.json"

    def entries(self, name: str = "fusion") -> list[tuple[Path, dict | None]]:
        """(sidecar path, its content or None when unreadable) of every cached engine of ``name``."""
        out = []
        for side in sorted(self.root.glob(f"{name}-*.json")):
            try:
                out.append((side, json.loads(side.read_text())))
            except (OSError, json.JSONDecodeError):
                out.append((side, None))
        return out

    def _check(self, key: EngineKey, engine: Path, side: Path,
               validate: Callable[[bytes], None] | None) -> bytes:
        """Engine bytes of a trusted entry; :class:`CorruptEngine` with the reason otherwise."""
        try:
            info = json.loads(side.read_text())
            cached_key = EngineKey.from_dict(info["key"])
            recorded = info["engine_sha256"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError, ExportError) as e:
            raise CorruptEngine(f"sidecar {side.name} unreadable ({type(e).__name__}: {e})") from e
        if cached_key != key:
            raise CorruptEngine(f"sidecar {side.name} holds another key ({'; '.join(key.differences(cached_key))})")
        data = engine.read_bytes()
        if hashlib.sha256(data).hexdigest() != recorded:
            raise CorruptEngine(f"{engine.name} does not match its recorded sha256 (truncated or overwritten)")
        if validate is not None:
            try:
                validate(data)
            except Exception as e:  # noqa: BLE001 - any runtime refusal means the entry is unusable
                raise CorruptEngine(f"{engine.name} cannot be deserialized ({type(e).__name__}: {e})") from e
        return data

    def _remove(self, *paths: Path) -> None:
        for p in paths:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    def lookup(self, key: EngineKey, name: str = "fusion",
               validate: Callable[[bytes], None] | None = None) -> Path | None:
        """Path of a trusted engine for ``key``, or None. A corrupt entry is deleted (logged)."""
        engine, side = self.paths(key, name)
        if not engine.is_file() and not side.is_file():
            return None
        try:
            if not engine.is_file():
                raise CorruptEngine(f"{engine.name} missing next to its sidecar")
            self._check(key, engine, side, validate)
        except CorruptEngine as e:
            log.warning("engine cache: corrupt entry %s (%s); deleting it", engine, e)
            self._remove(engine, side)
            raise
        return engine

    def store(self, key: EngineKey, data: bytes, name: str = "fusion", extra: dict | None = None) -> Path:
        """Write engine + sidecar atomically (engine first; the sidecar marks the entry complete)."""
        self.root.mkdir(parents=True, exist_ok=True)
        engine, side = self.paths(key, name)
        for target, payload in ((engine, bytes(data)), (side, None)):
            if payload is None:
                payload = (json.dumps({"key": key.to_dict(), "engine_sha256": hashlib.sha256(data).hexdigest(),
                                       "bytes": len(data), **(extra or {}),
                                       "built": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")},
                                      indent=2) + "\n").encode()
            tmp = target.with_name(target.name + f".tmp{os.getpid()}")
            tmp.write_bytes(payload)
            os.replace(tmp, target)
        return engine

    def get_or_build(self, key: EngineKey, build: Callable[[], bytes], name: str = "fusion",
                     validate: Callable[[bytes], None] | None = None, extra: dict | None = None) -> CacheResult:
        """Reuse a matching engine, or build (and store) one; corrupt entries are rebuilt."""
        notes: list[str] = []
        status = "built"
        try:
            hit = self.lookup(key, name, validate)
        except CorruptEngine as e:
            notes.append(f"corrupt cache entry deleted: {e}")
            status, hit = "rebuilt-corrupt", None
        if hit is not None:
            log.info("engine cache: reusing %s", hit)
            return CacheResult(hit, "hit", key, notes)
        if status == "built":
            for side, info in self.entries(name):
                if info is None or side.stem == f"{name}-{key.digest()}":
                    continue
                try:
                    diff = key.differences(EngineKey.from_dict(info["key"]))
                except (KeyError, TypeError, ValueError, ExportError):
                    continue
                notes.append(f"cached {side.stem} differs: {'; '.join(diff)}")
            for n in notes:
                log.info("engine cache: %s", n)
        log.info("engine cache: building %s engine for %s (%s)", key.precision, name, key.digest())
        data = build()
        if not data:
            raise ExportError("the engine builder returned no data")
        path = self.store(key, data, name, extra)
        return CacheResult(path, status, key, notes)
