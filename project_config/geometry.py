"""One layer's geometry, and the power-of-two and width limits of the integer datapath.

:class:`LayerGeometry` is derived once from the config (``Config.layers``) and carried
unchanged by the export (``model_export.LayerExport.geometry``) and by the hardware plan
(``hw.params.LayerPlan.geometry``, which adds only its memory bases). Two stages agree on a
layer when their geometries are equal. NumPy and torch free.

PoT codes (docs/INTEGER_SPEC.md section 2): a b-bit code has a sign bit and a (b-1)-bit
exponent field e; e = 0 is a zero weight, else the weight is ``s * 2^(K - (e - 1))`` with
``K = 2^(b-1) - 2`` (:func:`max_shift`).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

WEIGHT_BITS = (2, 4, 8)        # PoT code widths with a hardware form
MAX_SHIFT_SUPPORTED = 48       # largest K the integer datapath handles
MAX_ACC_WIDTH = 62             # accumulators fit golden's int64 and the testbench's decoding
# Channel groups per packing window: the core packs the computed channels of each window of
# this many consecutive groups of lanes into the lanes (docs/HARDWARE.md, "Dense lanes");
# golden's work counts pack the same way (docs/INTEGER_SPEC.md section 9).
PACK_GROUPS = 2
# Upper bounds of a manifest's fields, as the config schema allows them (project_config.schema).
MANIFEST_LIMITS = {"in_channels": 65536, "out_channels": 65536, "in_height": 4096,
                   "in_width": 4096, "out_height": 4096, "out_width": 4096, "padding": 7,
                   "pool": 2, "index": 1 << 16, "x_max": 1 << 16}


def max_shift(weight_bits: int) -> int:
    """K: the largest PoT exponent of a b-bit code, ``2^(b-1) - 2`` (b in :data:`WEIGHT_BITS`)."""
    if weight_bits not in WEIGHT_BITS:
        raise ValueError(f"weight bits {weight_bits!r} is not one of {list(WEIGHT_BITS)}")
    return (1 << (weight_bits - 1)) - 2


@dataclass(frozen=True)
class LayerGeometry:
    """A spiking conv layer or the classifier, with everything derived from its shape.

    Members
    -------
    index : int
        Position in the chain, the classifier last.
    kind : str
        ``"conv"`` (spiking) or ``"fc"`` (the non-spiking output classifier, a conv whose
        kernel covers the whole input).
    in_channels, in_height, in_width : int
        Input map (after the previous layer's pooling).
    out_channels, out_height, out_width : int
        Output map, before this layer's pooling.
    kernel : tuple of int
        ``(kh, kw)``.
    padding : int
        Zero padding on each side.
    pool : int
        Sum-pool factor applied to this layer's spikes (1 = none).
    x_max : int
        Largest integer input value the layer sees.
    weight_bits : int or None
        PoT code width; None for a full-precision network (training only: no K, no W).
    """
    index: int
    kind: str
    in_channels: int
    in_height: int
    in_width: int
    out_channels: int
    kernel: tuple
    padding: int
    out_height: int
    out_width: int
    pool: int
    x_max: int
    weight_bits: int | None

    # The manifest's layer entry (docs/INTEGER_SPEC.md section 7), in this order; K and W
    # are written for readers and checked against the derived values on load.
    MANIFEST_KEYS = ("index", "kind", "in_channels", "in_height", "in_width", "out_channels",
                     "kernel", "padding", "out_height", "out_width", "pool", "x_max",
                     "weight_bits", "max_shift", "acc_width")

    @property
    def fan_in(self) -> int:
        return self.in_channels * self.kernel[0] * self.kernel[1]

    @property
    def taps(self) -> int:
        return self.kernel[0] * self.kernel[1]

    @property
    def positions(self) -> int:
        return self.out_height * self.out_width

    @property
    def x_bits(self) -> int:
        """Bits of an input value (at least 1)."""
        return max(1, self.x_max.bit_length())

    @property
    def max_shift(self) -> int:
        """K of this layer's PoT codes."""
        return max_shift(self._bits())

    @property
    def accumulator_bound(self) -> int:
        """Largest |I_int|: fan-in x largest input x largest PoT term."""
        return self.fan_in * self.x_max * (1 << self.max_shift)

    @property
    def acc_width(self) -> int:
        """W: signed width with 2^(W-1) >= bound + 2, so saturated thresholds never collide."""
        return (self.accumulator_bound + 1).bit_length() + 1

    def logit_width(self, timesteps: int) -> int:
        """Signed width of the classifier's logits: T x (current + bias), each in W bits."""
        return self.acc_width + max(1, math.ceil(math.log2(timesteps))) + 1

    def with_weight_bits(self, weight_bits: int | None) -> "LayerGeometry":
        return dataclasses.replace(self, weight_bits=weight_bits)

    def _bits(self) -> int:
        if self.weight_bits is None:
            raise ValueError(f"layer {self.index}: full-precision weights have no PoT exponent "
                             "or accumulator width")
        return self.weight_bits

    def to_manifest(self) -> dict:
        """The manifest's entry for this layer (JSON types, :attr:`MANIFEST_KEYS` order)."""
        d = {k: getattr(self, k) for k in self.MANIFEST_KEYS}
        d["kernel"] = list(d["kernel"])
        return d

    @classmethod
    def from_manifest(cls, entry: dict, where: str) -> "LayerGeometry":
        """A manifest entry -> geometry; raises ValueError naming ``where`` and the key when a
        field is missing, ill-typed, or when K or W differ from what the shape implies."""
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected a mapping, got {type(entry).__name__}")
        fields = [f.name for f in dataclasses.fields(cls)]
        values = {}
        for key in fields:
            if key not in entry:
                raise ValueError(f"{where}.{key}: missing")
            v = entry[key]
            if key == "kind":
                ok = v in ("conv", "fc")
            elif key == "kernel":
                ok = (isinstance(v, list) and len(v) == 2
                      and all(type(k) is int and 1 <= k <= 4096 for k in v))
                v = tuple(v) if ok else v
            elif key == "weight_bits":
                ok = type(v) is int and v in WEIGHT_BITS
            else:
                ok = (type(v) is int and v >= (0 if key in ("index", "padding") else 1)
                      and v <= MANIFEST_LIMITS[key])
            if not ok:
                raise ValueError(f"{where}.{key}: invalid value {v!r}")
            values[key] = v
        geom = cls(**values)
        if geom.weight_bits not in WEIGHT_BITS:
            raise ValueError(f"{where}.weight_bits: {geom.weight_bits} is not one of "
                             f"{list(WEIGHT_BITS)}")
        for key in ("max_shift", "acc_width"):
            if entry.get(key) != getattr(geom, key):
                raise ValueError(f"{where}.{key}: {entry.get(key)!r}, but the layer's shape "
                                 f"and weight bits give {getattr(geom, key)}")
        return geom


def check_chain(layers: list, channels: int, height: int, width: int, bits: int, where: str):
    """Check that manifest layers (from :meth:`LayerGeometry.from_manifest`) form the chain
    the config would derive: indices 0, 1, ...; conv layers then one classifier; each layer's
    input the previous one's pooled output (the first one's the network input of ``bits``
    bits); output sizes and ``x_max`` implied by the shapes; one weight width. Raises
    ValueError naming ``where``, the layer and the key."""
    if not layers:
        raise ValueError(f"{where}: layers: empty (needs at least the classifier)")
    c, h, w, x_max = channels, height, width, (1 << bits) - 1
    for i, g in enumerate(layers):
        at = f"{where}: layers[{i}]"
        expect = {"index": i, "kind": "fc" if i == len(layers) - 1 else "conv",
                  "in_channels": c, "in_height": h, "in_width": w, "x_max": x_max,
                  "weight_bits": layers[0].weight_bits}
        if g.kind == "fc":
            expect.update(kernel=(h, w), padding=0, out_height=1, out_width=1, pool=1)
        else:
            kh, kw = g.kernel
            expect.update(out_height=h + 2 * g.padding - kh + 1, out_width=w + 2 * g.padding - kw + 1)
        for key, value in expect.items():
            if getattr(g, key) != value:
                raise ValueError(f"{at}.{key}: {getattr(g, key)!r}, but the chain (network "
                                 f"input, then each layer's pooled output) gives {value!r}")
        if g.out_height % g.pool or g.out_width % g.pool:
            raise ValueError(f"{at}.pool: {g.pool} does not divide the "
                             f"{g.out_height}x{g.out_width} output")
        c, h, w, x_max = g.out_channels, g.out_height // g.pool, g.out_width // g.pool, g.pool * g.pool


def first_difference(a: LayerGeometry, b: LayerGeometry) -> str | None:
    """The name of the first field where two geometries differ, or None if they are equal."""
    for f in dataclasses.fields(LayerGeometry):
        if getattr(a, f.name) != getattr(b, f.name):
            return f.name
    return None


class GeometryView:
    """Mixin: a layer object that carries a ``geometry`` reads its fields and derived values
    as its own attributes (``layer.out_channels`` is ``layer.geometry.out_channels``)."""

    def __getattr__(self, name):
        # Only called for names not found normally; never for the geometry itself (copy
        # and pickle probe instances before ``geometry`` is set).
        if name == "geometry" or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.geometry, name)
