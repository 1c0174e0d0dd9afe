"""The mutation sites of the RTL generator and their edits (sim.mutate runs them).

A site is one edit of the generator's source (``hw/``) in the code that builds RTL: the
functions of :data:`RTL_SOURCES`; :data:`OPERATORS` lists the edits (sim.mutate's module
docstring says what each does). A site's id hashes its file, function, edit and source
text, so it survives edits elsewhere in the file.
"""
from __future__ import annotations

import ast
import copy
import hashlib
import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The generator code that builds RTL, per file: the functions whose bodies are mutated
# (nested functions included). hw/axi.py (the bus wrapper, not in the bare core) and the
# Python reference models beside the units are left out.
RTL_SOURCES = {
    "hw/core.py": ("elaborate",),
    "hw/tap_issue.py": ("elaborate", "_planes"),
    "hw/compaction.py": ("elaborate",),
    "hw/packer.py": ("elaborate",),
    "hw/neuron_unit.py": ("elaborate",),
    "hw/channel_gate.py": ("elaborate", "score"),
    "hw/pool_counter.py": ("elaborate",),
    "hw/pot_shift_add.py": ("elaborate", "lane_acc"),
    "hw/param_loader.py": ("elaborate",),
    "hw/signature_unit.py": ("elaborate",),
    "hw/logic.py": ("first_set", "popcount", "tree_sum"),
}
OPERATORS = ("comparison", "operator", "mask ignored", "inversion dropped", "off by one",
             "transition dropped", "assignment dropped", "stuck at zero", "condition negated")
_CMP = {ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Lt: ast.LtE, ast.LtE: ast.Lt,
        ast.Gt: ast.GtE, ast.GtE: ast.Gt}
_BIN = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd,
        ast.BitXor: ast.BitOr}



@dataclass(frozen=True)
class Site:
    """One mutation: ``replacement`` for the source text at lines ``line``-``end_line``,
    columns ``col``-``end_col`` (ast positions) of ``path``."""
    id: str
    path: str
    function: str
    operator: str
    line: int
    col: int
    end_line: int
    end_col: int
    original: str
    replacement: str


def _expr(node) -> str:
    return f"({ast.unparse(node)})"


def _edits(node, parent):
    """(operator, replacement text) of every edit of ``node``."""
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _CMP:
        new = copy.deepcopy(node)
        new.ops = [_CMP[type(node.ops[0])]()]
        yield "comparison", _expr(new)
    elif isinstance(node, ast.BinOp) and type(node.op) in _BIN:
        new = copy.deepcopy(node)
        new.op = _BIN[type(node.op)]()
        yield "operator", _expr(new)
        if isinstance(node.op, ast.BitAnd):
            yield "mask ignored", _expr(node.left)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Invert):
        yield "inversion dropped", _expr(node.operand)
    elif (isinstance(node, ast.Constant) and type(node.value) is int
          and isinstance(parent, (ast.Compare, ast.BinOp, ast.Call))
          and not (isinstance(parent, ast.Call) and isinstance(parent.func, ast.Name))):
        # In expressions and method arguments (x.eq(3), v.replicate(2)); not in calls
        # of Python functions (range, Signal widths), whose edits only break the build.
        yield "off by one", str(node.value + 1)
    elif (isinstance(node, ast.Assign) and len(node.targets) == 1
          and isinstance(node.targets[0], ast.Attribute) and node.targets[0].attr == "next"):
        yield "transition dropped", "pass"
    elif (isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Attribute)
          and isinstance(node.target.value, ast.Attribute) and node.target.value.attr == "d"):
        yield "assignment dropped", "pass"
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if (node.func.attr == "eq" and len(node.args) == 1 and not node.keywords
                and not (isinstance(node.args[0], ast.Constant) and node.args[0].value == 0)):
            new = copy.deepcopy(node)
            new.args = [ast.Constant(0)]
            yield "stuck at zero", _expr(new)
        elif node.func.attr in ("If", "Elif") and len(node.args) == 1:
            new = copy.deepcopy(node)
            new.args = [ast.UnaryOp(ast.Invert(), ast.Compare(node.args[0], [ast.NotEq()],
                                                             [ast.Constant(0)]))]
            yield "condition negated", ast.unparse(new)


def _line_starts(text: str) -> list:
    """Byte offset of each line's start (ast columns are UTF-8 byte offsets)."""
    starts = [0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line.encode()))
    return starts


def _span(starts: list, line: int, col: int, end_line: int, end_col: int) -> tuple[int, int]:
    return starts[line - 1] + col, starts[end_line - 1] + end_col


def sites(root: Path = ROOT) -> list[Site]:
    """Every mutation site of :data:`RTL_SOURCES`, in source order."""
    out = []
    for rel, functions in RTL_SOURCES.items():
        text = (root / rel).read_text()
        data, starts = text.encode(), _line_starts(text)
        tree = ast.parse(text)
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        seen = Counter()
        for fn in ast.walk(tree):
            if (not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
                    or fn.name not in functions):
                continue
            if isinstance(parents.get(fn), (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue                    # a nested helper: walked with its parent
            for node in ast.walk(fn):
                if not hasattr(node, "end_lineno"):
                    continue
                a, b = _span(starts, node.lineno, node.col_offset, node.end_lineno,
                             node.end_col_offset)
                original = data[a:b].decode()
                for operator, replacement in _edits(node, parents.get(node)):
                    key = (rel, fn.name, operator, original, replacement)
                    seen[key] += 1
                    digest = hashlib.sha1(repr((*key, seen[key])).encode()).hexdigest()[:10]
                    out.append(Site(digest, rel, fn.name, operator, node.lineno,
                                    node.col_offset, node.end_lineno, node.end_col_offset,
                                    original, replacement))
    out.sort(key=lambda s: (s.path, s.line, s.col, s.operator))
    return out


def apply(site: Site, text: str) -> str:
    """``text`` (the file's source) with ``site``'s edit."""
    data = text.encode()
    a, b = _span(_line_starts(text), site.line, site.col, site.end_line, site.end_col)
    if data[a:b].decode() != site.original:
        raise RuntimeError(f"{site.path}:{site.line}: the source changed under site {site.id}")
    return (data[:a] + site.replacement.encode() + data[b:]).decode()


def sample(all_sites: list[Site], n: int, seed: int) -> list[Site]:
    """``n`` sites by ``seed``, round-robin over the edits (each edit's sites shuffled and
    interleaved by file), so that every edit and file is drawn before any is drawn twice."""
    rng = random.Random(seed)
    pools = {}
    for op in OPERATORS:
        by_file = defaultdict(list)
        for s in all_sites:
            if s.operator == op:
                by_file[s.path].append(s)
        for group in by_file.values():
            rng.shuffle(group)
        files = sorted(by_file)
        rng.shuffle(files)
        order = [g[i] for i in range(max(map(len, by_file.values()), default=0))
                 for g in (by_file[f] for f in files) if i < len(g)]
        pools[op] = order
    chosen = []
    while len(chosen) < n and any(pools.values()):
        for op in OPERATORS:
            if pools[op] and len(chosen) < n:
                chosen.append(pools[op].pop(0))
    return chosen
