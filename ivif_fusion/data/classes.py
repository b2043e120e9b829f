"""Class maps: the one way dataset class names become class ids.

Every reader takes a :class:`ClassMap` (or the name of a built-in one, or a YAML file with
``classes:`` and ``map:``) that renames, merges or drops the dataset's classes; training and
evaluation jobs build theirs with :meth:`ClassMap.onto` (a dataset's classes matched by name
onto a task network's classes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .records import LayoutError


@dataclass(frozen=True)
class ClassMap:
    """Output classes and how the dataset's class names map onto them.

    Args:
        classes: output class names; the index is the class id in :class:`Record`.
        mapping: dataset class name -> output class name, or ``None`` to drop those boxes.
            A dataset class that is not in ``mapping`` keeps its name and must then be one
            of ``classes``; otherwise it is an ``unknown_class`` problem.
    """

    classes: tuple[str, ...]
    mapping: Mapping[str, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        bad = [t for t in self.mapping.values() if t is not None and t not in self.classes]
        if bad:
            raise LayoutError(f"class map sends boxes to '{bad[0]}', which is not one of its classes {list(self.classes)}")

    def target(self, source: str) -> int | None:
        """Output id for a dataset class name; ``None`` = drop; KeyError when unknown."""
        name = self.mapping[source] if source in self.mapping else source
        if name is None:
            return None
        try:
            return self.classes.index(name)
        except ValueError:
            raise KeyError(source) from None

    @classmethod
    def identity(cls, names: Sequence[str]) -> ClassMap:
        return cls(tuple(names))

    @classmethod
    def onto(cls, source: Sequence[str], classes: Sequence[str], dataset: str = "dataset") -> ClassMap:
        """``source`` class names matched by name onto ``classes`` (a task network's); the others are
        dropped. LLVIP's ``person`` becomes MSRS's ``person`` (id 0). No common name is an error."""
        if not set(source) & set(classes):
            raise LayoutError(f"{dataset}: none of its classes {list(source)} is one of {list(classes)}")
        return cls(tuple(classes), {n: None for n in source if n not in classes})


M3FD_CLASSES = ("People", "Car", "Bus", "Motorcycle", "Lamp", "Truck")
MSRS_CLASSES = ("person", "bicycle", "car")

# Built-in maps, selectable by name (``--class-map NAME``). 'm3fd_to_msrs' puts M3FD on the
# MSRS classes so both can train one detector: motorcycles join 'bicycle' (MSRS labels
# two-wheelers with riders there), buses and trucks join 'car', lamps are dropped.
CLASS_MAPS: dict[str, ClassMap] = {
    "msrs": ClassMap(MSRS_CLASSES),
    "llvip": ClassMap(("person",)),
    "m3fd": ClassMap(M3FD_CLASSES),
    "m3fd_to_msrs": ClassMap(MSRS_CLASSES, {"People": "person", "Motorcycle": "bicycle", "Car": "car",
                                            "Bus": "car", "Truck": "car", "Lamp": None}),
    "llvip_to_msrs": ClassMap(MSRS_CLASSES),
}


def load_class_map(spec: str | Path | ClassMap | None) -> ClassMap | None:
    """A :class:`ClassMap` from a built-in name, a YAML file (``classes: [...]``, ``map: {...}``) or itself."""
    if spec is None or isinstance(spec, ClassMap):
        return spec
    if str(spec) in CLASS_MAPS:
        return CLASS_MAPS[str(spec)]
    path = Path(spec)
    if not path.is_file():
        raise LayoutError(f"class map '{spec}' is neither a built-in ({', '.join(CLASS_MAPS)}) nor a YAML file")
    import yaml

    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or not isinstance(data.get("classes"), list):
        raise LayoutError(f"class map file {path}: expected a mapping with a 'classes' list (and optional 'map')")
    mapping = data.get("map") or {}
    if not isinstance(mapping, dict):
        raise LayoutError(f"class map file {path}: 'map' must be a mapping of dataset class -> class (or null)")
    unknown = set(data) - {"classes", "map"}
    if unknown:
        raise LayoutError(f"class map file {path}: unknown key '{sorted(unknown)[0]}' (valid: classes, map)")
    return ClassMap(tuple(str(c) for c in data["classes"]), {str(k): v for k, v in mapping.items()})
