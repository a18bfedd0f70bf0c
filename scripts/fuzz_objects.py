#!/usr/bin/env python3
"""Structure-aware mutants of the scikit-learn cases, for the pickle and skops readers.

    scripts/python-env scripts/fuzz_objects.py OUT_DIR MUTANTS SEED [CASE...]

A CASE named `gbdt/<case>` is a LightGBM text model of models/gbdt/ instead: its `key=value`
lines are changed by field (a list truncated, extended or with one number set to an edge value;
a scalar swapped for one), so that each mutant still parses line by line and its trees' arrays
disagree with each other or with the header. An XGBoost JSON model (`model.json`) has one to
three of its JSON values changed the same way (arrays, numbers, strings), and stays JSON; an
XGBoost UBJSON model (`model.ubj`) is read by xgboost as JSON, changed so, and written back as
UBJSON by `ubjson()` below.

Byte-level mutation (`scripts/fuzz-models`) rarely makes a file whose arrays are still
self-consistent but no longer agree with each other: a scaler whose `scale_` is shorter than its
`mean_`, a tree whose child index points past its nodes, a coefficient matrix turned on its side.
Those are what a damaged or crafted model holds, and what the estimator readers must refuse with
an error. So here each case's fitted estimator (our own files, loaded by scikit-learn) is changed
as objects before it is written again: one to three of its attributes (arrays truncated, extended,
emptied, transposed, flattened, recast, or with one value set to NaN, an infinity, -1 or a huge
number; integers, floats, strings, lists and tuples swapped for edge values), or the state of one
of its trees (a field of one node, the node count, the values). Each mutant is written in the
case's format (pickle protocols 2 to 5 for `model.pkl`, skops for `model.skops`) as
`OUT_DIR/<case>/<n>.<ext>`; `scripts/fuzz-objects` then loads and scores every one with the
release example `mutate --corpus`, which fails on a panic.
"""

from __future__ import annotations

import copy
import io
import json
import math
import pickle
import sys
import zlib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CASES = HERE.parent / "models" / "sklearn"
STRINGS = ["", "l1", "l2", "max", "auto", "ovr", "multinomial", "log_loss", "relu", "identity", "logistic",
           "tanh", "softmax", "drop", "passthrough", "ignore", "error", "mean", "median", "constant",
           "most_frequent", "infrequent_if_exist", "first", "if_binary", "lloyd", "squared_error"]
INTS = [-1, 0, 1, 2, 3, 7, 255, 2**31, 2**62, -(2**62)]
FLOATS = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e308, -1.5, 2.5]


def load(path: Path):
    if path.suffix == ".skops":
        import skops.io

        return skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))
    with open(path, "rb") as f:
        return pickle.load(f)


def is_tree(v) -> bool:
    from sklearn.tree._tree import Tree

    return isinstance(v, Tree)


def slots(root):
    """Every (container, key) whose value a mutation may replace, and every tree, reachable from
    the estimator through attributes, lists, tuples (as their container's slot), dicts and
    object arrays."""
    out, trees, seen = [], [], set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if is_tree(obj):
            trees.append(obj)
            continue
        if isinstance(obj, dict):
            items = list(obj.items())
            container = obj
        elif isinstance(obj, list):
            items = list(enumerate(obj))
            container = obj
        elif isinstance(obj, np.ndarray) and obj.dtype == object:
            items = [(i, v) for i, v in enumerate(obj.ravel())]
            container = obj.reshape(-1) if obj.flags.c_contiguous else None
        elif type(obj).__name__ == "Booster":
            # XGBoost's and LightGBM's Boosters hold native handles: changing those crashes the
            # library itself (a Booster as a whole may still be replaced by its parent's slot).
            continue
        elif hasattr(obj, "__dict__") and type(obj).__module__.split(".")[0] in ("sklearn", "xgboost", "lightgbm"):
            items = list(vars(obj).items())
            container = vars(obj)
        else:
            continue
        for k, v in items:
            if container is not None:
                out.append((container, k))
            if isinstance(v, tuple):
                stack.extend(v)
            else:
                stack.append(v)
    return out, trees


def put(a: np.ndarray, i: int, dtype, rng) -> None:
    """Sets `a[i]` to an edge value its type holds (the type's largest when the value drawn
    does not fit)."""
    pool = FLOATS + INTS if dtype.kind == "f" else INTS
    with np.errstate(all="ignore"):
        try:
            a[i] = pool[rng.integers(len(pool))]
        except (OverflowError, ValueError, TypeError):
            if dtype.kind in "iu":
                a[i] = np.iinfo(dtype).max


def mutate_array(v: np.ndarray, rng) -> np.ndarray:
    numeric = v.dtype.kind in "biuf"
    kinds = ["truncate", "extend", "empty", "flatten", "axis"]
    if v.ndim == 2:
        kinds.append("transpose")
    if numeric:
        kinds += ["poke", "poke", "poke", "recast"]
    if v.dtype.names:
        kinds += ["field", "field", "field"]
    kind = kinds[rng.integers(len(kinds))]
    n = len(v) if v.ndim else 0
    if kind == "truncate" and n:
        return v[: rng.integers(n)].copy()
    if kind == "extend" and n:
        return np.concatenate([v, v[: rng.integers(1, n + 1)]])
    if kind == "empty" and v.ndim:
        return v[:0].copy()
    if kind == "flatten":
        return v.ravel().copy()
    if kind == "axis":
        return v[None].copy()
    if kind == "transpose":
        return v.T.copy()
    if kind == "recast":
        to = [np.int64, np.float32, np.int8, np.uint8, np.float64, object][rng.integers(6)]
        with np.errstate(all="ignore"):
            return np.nan_to_num(v).astype(to) if to is not object else v.astype(object)
    if kind == "poke" and v.size:
        w = v.copy()
        flat = w.reshape(-1)
        i = rng.integers(flat.size)
        put(flat, i, v.dtype, rng)
        return w
    if kind == "field" and v.size:
        w = v.copy()
        name = v.dtype.names[rng.integers(len(v.dtype.names))]
        i = rng.integers(len(w))
        put(w[name], i, w.dtype[name], rng)
        return w
    return v


def mutate_value(v, rng):
    if isinstance(v, np.ndarray):
        return mutate_array(v, rng)
    if isinstance(v, (bool, np.bool_)):
        return not v
    if isinstance(v, (int, np.integer)):
        return INTS[rng.integers(len(INTS))]
    if isinstance(v, (float, np.floating)):
        return FLOATS[rng.integers(len(FLOATS))]
    if isinstance(v, str):
        return STRINGS[rng.integers(len(STRINGS))]
    if isinstance(v, (list, tuple)):
        items = list(v)
        kind = rng.integers(4)
        if kind == 0 and items:
            del items[rng.integers(len(items))]
        elif kind == 1 and items:
            items.insert(rng.integers(len(items) + 1), items[rng.integers(len(items))])
        elif kind == 2:
            items.reverse()
        elif items:
            i = rng.integers(len(items))
            items[i] = mutate_value(items[i], rng)
        return type(v)(items) if isinstance(v, tuple) else items
    if v is None:
        return [0, 1.0, "auto", np.zeros(3), np.zeros((2, 2))][rng.integers(5)]
    return None


class TreePickler(pickle.Pickler):
    """Writes the trees in `targets` with a mutated state (node fields, counts, values)."""

    def __init__(self, f, protocol, targets, rng):
        super().__init__(f, protocol=protocol)
        self.targets, self.rng = targets, rng

    def reducer_override(self, obj):
        if id(obj) not in self.targets:
            return NotImplemented
        cls, args, state = obj.__reduce__()
        state = dict(state)
        key = ["nodes", "nodes", "nodes", "values", "node_count", "max_depth"][self.rng.integers(6)]
        state[key] = mutate_value(state[key], self.rng)
        return cls, args, state


def mutant(model, fmt: str, rng) -> bytes | None:
    m = copy.deepcopy(model)
    found, trees = slots(m)
    targets = set()
    for _ in range(1 + rng.integers(3)):
        if trees and fmt == ".pkl" and rng.random() < 0.3:
            targets.add(id(trees[rng.integers(len(trees))]))
        elif found:
            container, key = found[rng.integers(len(found))]
            try:
                container[key] = mutate_value(container[key], rng)
            except (TypeError, ValueError, IndexError):
                pass
    try:
        if fmt == ".skops":
            import skops.io

            return skops.io.dumps(m)
        buf = io.BytesIO()
        TreePickler(buf, int(rng.integers(2, 6)), targets, rng).dump(m)
        return buf.getvalue()
    except Exception:  # a mutant the writer cannot write is no mutant
        return None


EDGE_NUMBERS = ["-1", "0", "1", "2", "7", "255", "256", "2147483647", "-2147483648", "4294967296",
                "1e308", "-1e308", "nan", "inf", "-inf", "0.5", "-0.0"]


def mutate_lightgbm(text: str, rng) -> str:
    """One to three `key=value` lines of a LightGBM text model changed (see the module doc)."""
    lines = text.split("\n")
    fields = [i for i, line in enumerate(lines) if "=" in line and not line.startswith("[")]
    for _ in range(1 + rng.integers(3)):
        i = fields[rng.integers(len(fields))]
        key, value = lines[i].split("=", 1)
        items = value.split(" ")
        kind = rng.integers(5)
        if kind == 0 and len(items) > 1:
            items = items[: rng.integers(len(items))]
        elif kind == 1:
            items = items + items[: 1 + rng.integers(len(items))]
        elif kind == 2:
            items[rng.integers(len(items))] = EDGE_NUMBERS[rng.integers(len(EDGE_NUMBERS))]
        elif kind == 3 and len(items) > 1:
            a, b = rng.integers(len(items)), rng.integers(len(items))
            items[a], items[b] = items[b], items[a]
        else:
            items = [EDGE_NUMBERS[rng.integers(len(EDGE_NUMBERS))]]
        lines[i] = key + "=" + " ".join(items)
    return "\n".join(lines)


def mutate_json(doc, rng):
    """One to three values of a JSON document changed: arrays truncated, extended, reordered or
    given an edge value; numbers and strings swapped for edge values."""
    doc = copy.deepcopy(doc)
    places = []
    stack = [doc]
    while stack:
        v = stack.pop()
        items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else []
        for k, x in items:
            places.append((v, k))
            if isinstance(x, (dict, list)):
                stack.append(x)
    edge = [-1, 0, 1, 2, 255, 2**31 - 1, -(2**31), 2**32, 1e308, -1e308, 0.5, "", "nan", "-1", "1e30"]
    for _ in range(1 + rng.integers(3)):
        parent, key = places[rng.integers(len(places))]
        v = parent[key]
        kind = rng.integers(4)
        if isinstance(v, list) and v and kind == 0:
            parent[key] = v[: rng.integers(len(v))]
        elif isinstance(v, list) and v and kind == 1:
            parent[key] = v + v[: 1 + rng.integers(len(v))]
        elif isinstance(v, list) and v and kind == 2:
            v[rng.integers(len(v))] = edge[rng.integers(len(edge))]
        elif not isinstance(v, (dict, list)) or kind == 3:
            parent[key] = edge[rng.integers(len(edge))]
    return doc


def ubjson(v) -> bytes:
    """`v` (what json.loads gives) as UBJSON: integers as int64, floats as float64."""
    import struct

    def text(s: str) -> bytes:
        b = s.encode()
        return b"L" + struct.pack(">q", len(b)) + b

    if v is None:
        return b"Z"
    if v is True:
        return b"T"
    if v is False:
        return b"F"
    if isinstance(v, int):
        return b"L" + struct.pack(">q", v) if -(2**63) <= v < 2**63 else b"H" + text(str(v))
    if isinstance(v, float):
        return b"D" + struct.pack(">d", v)
    if isinstance(v, str):
        return b"S" + text(v)
    if isinstance(v, list):
        return b"[" + b"".join(ubjson(x) for x in v) + b"]"
    return b"{" + b"".join(text(k) + ubjson(x) for k, x in v.items()) + b"}"


def write_object_mutants(path: Path, count: int, rng, dest: Path) -> int:
    """Writes up to `count` object mutants of the estimator in `path` (pickle or skops) to
    `dest`; returns how many the writer could write."""
    estimator = load(path)
    written = 0
    for n in range(count):
        data = mutant(estimator, path.suffix, rng)
        if data is not None:
            (dest / f"{n:06d}{path.suffix}").write_bytes(data)
            written += 1
    return written


def main_gbdt(out: Path, count: int, seed: str, name: str) -> int:
    """The mutants of a gbdt case: LightGBM text, XGBoost JSON or UBJSON, or a pickled or skops
    scikit-learn-API estimator."""
    model = HERE.parent / "models" / name / "model"
    rng = np.random.default_rng([int(seed), zlib.crc32(name.encode())])
    dest = out / name.split("/", 1)[1]
    dest.mkdir(parents=True, exist_ok=True)
    if (model / "model.json").exists():
        doc = json.loads((model / "model.json").read_text())
        for n in range(count):
            (dest / f"{n:06d}.json").write_text(json.dumps(mutate_json(doc, rng)))
        return count
    if (model / "model.ubj").exists():
        import xgboost

        doc = json.loads(xgboost.Booster(model_file=str(model / "model.ubj")).save_raw("json"))
        for n in range(count):
            (dest / f"{n:06d}.ubj").write_bytes(ubjson(mutate_json(doc, rng) if n else doc))
        return count
    pickled = next((model / f for f in ("model.pkl", "model.skops") if (model / f).exists()), None)
    if pickled is not None:
        # A scikit-learn-API XGBoost or LightGBM estimator saved with mlflow.xgboost /
        # mlflow.lightgbm as a pickle or skops file: mutated as objects, as the zoo's are.
        return write_object_mutants(pickled, count, rng, dest)
    text = (model / "model.lgb").read_text()
    for n in range(count):
        (dest / f"{n:06d}.lgb").write_text(mutate_lightgbm(text, rng))
    return count


def main() -> None:
    out, count, seed, *names = sys.argv[1:]
    out, count = Path(out), int(count)
    if names and all(n.startswith("gbdt/") for n in names):
        print(json.dumps({n: main_gbdt(out, count, seed, n) for n in names}))
        return
    cases = json.loads((CASES / "cases.json").read_text())
    summary = {}
    for case in cases:
        name = case["case"]
        if names and name not in names:
            continue
        model_dir = CASES / name / "model"
        path = next((model_dir / f for f in ("model.pkl", "model.skops") if (model_dir / f).exists()), None)
        if path is None:
            continue
        rng = np.random.default_rng([int(seed), zlib.crc32(name.encode())])
        dest = out / name
        dest.mkdir(parents=True, exist_ok=True)
        summary[name] = write_object_mutants(path, count, rng, dest)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
