"""Core parameters derived from a config: memory maps, widths, record layout (no Amaranth).

The generator (hw.core), the build report (hw.build) and the testbench (sim) all read the
same :class:`CoreParams`, so addresses and bit positions are defined once.
"""
from __future__ import annotations

from dataclasses import dataclass

from project_config import Config, ConfigError
from project_config.schema import accumulator_width, logit_width, max_shift

# Parameter-load targets (param_in.payload.target).
(TARGET_WEIGHTS, TARGET_THRESHOLDS, TARGET_CHANNEL_MASK, TARGET_POSITION_MASK,
 TARGET_LAYER_PRUNING, TARGET_GATE_WEIGHTS, TARGET_GATE_THRESHOLDS) = range(7)
# Output-record kinds (out.payload.kind).
KIND_SPIKES, KIND_CURRENT, KIND_LOGITS, KIND_SIGNATURE = range(4)
SIGNATURE_CRC_WIDTH = 32   # signature record data: CRC-32 at [0, 32), spike count above

MAX_LANE_WIDTH = 62   # accumulators must fit golden's int64 and the testbench's decoding


def bits_for(n: int) -> int:
    """Bits of an unsigned counter holding 0 .. n-1 (at least 1)."""
    return max(1, (n - 1).bit_length())


@dataclass(frozen=True)
class LayerPlan:
    """One layer as the core runs it: geometry plus its regions in each memory."""
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
    x_bits: int            # bits per input value
    groups: int            # ceil(out_channels / lanes)
    acc_width: int         # W(l)
    weight_base: int       # word address in weight_sram
    group_base: int        # word address in threshold_sram / channel_mask_sram
    membrane_base: int     # word address in membrane_sram (spiking layers)
    position_base: int     # bit address in position_mask_sram (spiking layers)
    # Runtime pruning (docs/INTEGER_SPEC.md section 5), when the core has it:
    prior_base: int = 0    # word address in prior_sram of this layer's channel sums
    gate_weight_base: int = 0   # word address in gate_weight_sram (gated layers)
    gate_group_base: int = 0    # word address in gate_threshold_sram (gated layers)
    gated: bool = False    # this layer has a channel gate (layers >= 1 of a gating core)

    @property
    def taps(self) -> int:
        return self.kernel[0] * self.kernel[1]

    @property
    def positions(self) -> int:
        return self.out_height * self.out_width

    @property
    def act_width(self) -> int:
        # Bit-plane layout: bit k of channel c's value at k * in_channels + c.
        return self.in_channels * self.x_bits

    @property
    def act_depth(self) -> int:
        return self.in_height * self.in_width

    def weight_addr(self, group: int, tap: int, ci: int) -> int:
        return self.weight_base + (group * self.taps + tap) * self.in_channels + ci


class CoreParams:
    """Everything the generated core is sized by, computed from a validated Config."""

    def __init__(self, cfg: Config, skipping: bool | None = None):
        arch = cfg.model.get("arch", "convnet")
        if arch != "convnet":
            raise ConfigError(f"{cfg.path}: model.arch: {arch!r} has no hardware form "
                              "(the core runs 'convnet' chains)")
        bits = cfg.quant["weight_bits"]
        if bits is None:
            raise ConfigError(f"{cfg.path}: quant.weight_bits: null (full precision) has no hardware form")
        membrane = cfg.quant["membrane"]
        if membrane not in ("ternary", "binary"):
            raise ConfigError(f"{cfg.path}: quant.membrane: {membrane!r} has no hardware form "
                              "(use 'ternary' or 'binary')")
        self.config_path = cfg.path
        # Runtime pruning hardware: built when the config's pruning section turns it on.
        self.spatial_pruning = cfg.pruning["spatial_ratio"] > 0.0
        self.channel_gating = (cfg.pruning["channel_gate_threshold"] > 0.0
                               and len(cfg.spiking_layers) > 1)
        self.name = cfg.name
        self.lanes = cfg.hardware["lanes"]
        # False: a reference core that issues every input, position and group (docs/HARDWARE.md).
        self.skipping = cfg.hardware["skipping"] if skipping is None else bool(skipping)
        if not self.skipping:
            # The reference core measures what skipping saves; it has no runtime pruning
            # (its cycle count, skip_disabled_cycles(), depends on the shape only).
            self.spatial_pruning = self.channel_gating = False
        self.weight_bits = bits
        self.max_shift = max_shift(bits)
        self.membrane = membrane
        self.membrane_bits = 2 if membrane == "ternary" else 1
        self.levels = 3 if membrane == "ternary" else 2
        self.timesteps = cfg.timesteps
        inp = cfg.model["input"]
        self.input_channels, self.input_height, self.input_width = (
            inp["channels"], inp["height"], inp["width"])
        self.input_bits = inp["bits"]

        plans = []
        wb = gb = mb = pb = rb = gwb = ggb = 0
        for spec in cfg.layers:
            groups = -(-spec.out_channels // self.lanes)
            gated = self.channel_gating and spec.kind == "conv" and spec.index > 0
            plan = LayerPlan(
                index=spec.index, kind=spec.kind, in_channels=spec.in_channels,
                in_height=spec.in_height, in_width=spec.in_width,
                out_channels=spec.out_channels, kernel=tuple(spec.kernel),
                padding=spec.padding, out_height=spec.out_height, out_width=spec.out_width,
                pool=spec.pool, x_bits=spec.x_bits, groups=groups,
                acc_width=accumulator_width(spec, bits),
                weight_base=wb, group_base=gb, membrane_base=mb, position_base=pb,
                prior_base=rb, gate_weight_base=gwb, gate_group_base=ggb, gated=gated)
            plans.append(plan)
            wb += groups * plan.taps * spec.in_channels
            gb += groups
            if spec.kind == "conv":
                mb += plan.positions * groups
                pb += plan.positions
                rb += groups
            if gated:
                gwb += groups * spec.in_channels
                ggb += groups
        self.layers: list[LayerPlan] = plans
        self.weight_depth, self.group_depth = wb, gb
        self.membrane_depth, self.position_depth = mb, pb
        self.prior_depth = rb if self.channel_gating else 0
        self.gate_weight_depth, self.gate_group_depth = gwb, ggb
        spiking = [p for p in plans if p.kind == "conv"]
        # Signed widths: a prior sum |P| <= positions; a gate score |z| <= C_in * positions of
        # the previous layer, and its thresholds reach bound + 1; e: |e| <= C_out.
        self.prior_width = max(p.positions for p in spiking).bit_length() + 1
        self.gate_width = max([p.in_channels * q.positions for p, q in zip(spiking[1:], spiking)]
                              + [1]).bit_length() + 2
        self.importance_width = max(p.out_channels for p in spiking).bit_length() + 1

        self.acc_width = max(p.acc_width for p in plans)
        if self.acc_width > MAX_LANE_WIDTH:
            raise ConfigError(f"{cfg.path}: quant.weight_bits: {bits}-bit PoT needs a "
                              f"{self.acc_width}-bit accumulator (max {MAX_LANE_WIDTH})")
        self.logit_width = logit_width(cfg.layers[-1], bits, self.timesteps)
        self.max_in_channels = max(p.in_channels for p in plans)
        self.max_x_bits = max(p.x_bits for p in plans)
        self.max_taps = max(p.taps for p in plans)
        self.max_positions = max(p.positions for p in plans)
        self.max_groups = max(p.groups for p in plans)
        self.max_out_channels = max(p.out_channels for p in plans[:-1])
        # The pooled output written to the next layer's input buffer: one word per position.
        self.threshold_lane_width = self.levels * 3 * self.acc_width
        # Spikes counted per (layer, step): at most every lane of every visited record.
        self.spike_count_width = bits_for(max(p.positions * p.groups * self.lanes
                                              for p in plans[:-1]) + 2)
        # Work counters per (layer, step), sent with the signature: inputs issued to the
        # lanes (events), lane additions of computed channels (synaptic ops), and computed
        # (position, group) neuron-unit updates. Bounds: every input of every tap, every lane.
        events_max = max(p.positions * p.groups * p.taps * p.in_channels for p in plans[:-1])
        self.event_count_width = bits_for(events_max + 2)
        self.synaptic_count_width = bits_for(events_max * self.lanes + 2)
        self.update_count_width = bits_for(max(p.positions * p.groups for p in plans[:-1]) + 2)
        self.signature_width = (SIGNATURE_CRC_WIDTH + self.spike_count_width
                                + self.event_count_width + self.synaptic_count_width
                                + self.update_count_width)
        self.record_data_width = max(self.lanes * (1 + self.membrane_bits),
                                     self.lanes * self.logit_width, self.signature_width)
        self.param_data_width = max(self.lanes * self.weight_bits, self.threshold_lane_width,
                                    self.lanes, 1, 2 * self.lanes, self.gate_width,
                                    1 + self.importance_width)
        self.param_addr_width = bits_for(max(self.weight_depth, self.group_depth,
                                             self.position_depth, self.gate_weight_depth, 2))

    @property
    def spiking_layers(self):
        return self.layers[:-1]

    def skip_disabled_cycles(self) -> dict:
        """Cycles of one inference on the core built with ``skipping`` off, in closed form
        (no stalls on any stream). It visits every position and group and issues every input
        channel of every kernel tap, so the count depends on the shape only:

        - per (position, group): GROUP, GROUP_CHECK, 2 + taps * C_in in ACCUMULATE (one
          cycle to fetch the first word, one to load it, then one per channel), DRAIN,
          NEURON: ``taps * C_in + 6``;
        - per position: POSITION and POSITION_CHECK (the classifier only POSITION);
        - per pool window: POOL_WRITE; per layer: LAYER_DONE;
        - per step: LOAD, one cycle per input position; at the end, LOGITS, one per group.

        Returns ``{"layers": [...], "total": N}`` as the testbench counts them (sim.host,
        RecordDecoder.layer_cycles): cycle 0 is the first LOAD cycle and a record shown in
        cycle n is stamped n; ``layers[l]`` sums over steps the stamps from the previous
        layer's last record to layer l's last record (a spiking layer's is its signature,
        in LAYER_DONE; the classifier's its last current, so its POOL_WRITE and LAYER_DONE
        go to layer 0 of the next step, and layer 0 at step 0 starts at stamp 0, not after
        a record); the total ends at the clock edge that closes the last LOGITS cycle.
        """
        T = self.timesteps
        body = []
        for lp in self.layers:
            per_group = lp.taps * lp.in_channels + 6
            if lp.kind == "fc":
                body.append(1 + lp.groups * per_group)          # POSITION + groups
            else:
                windows = lp.positions // (lp.pool * lp.pool)
                body.append(lp.positions * (2 + lp.groups * per_group) + windows + 1)
        load = self.input_height * self.input_width
        fc_tail = 2                                              # POOL_WRITE, LAYER_DONE
        layers = [T * b for b in body]
        layers[0] += T * load + (T - 1) * fc_tail - 1
        total = sum(layers) + fc_tail + self.classifier.groups + 1
        return {"layers": layers, "total": total}

    @property
    def classifier(self):
        return self.layers[-1]

    def memory_bits(self) -> dict:
        """SRAM bits by kind, as generated."""
        return {
            "weights": self.weight_depth * self.lanes * self.weight_bits,
            "membrane": self.membrane_depth * self.lanes * self.membrane_bits,
            "spikes_and_inputs": sum(p.act_depth * p.act_width for p in self.layers),
            "thresholds": self.group_depth * self.lanes * self.threshold_lane_width,
            "channel_masks": self.group_depth * self.lanes,
            "position_masks": self.position_depth,
            "pruning": (self.prior_depth * self.lanes * self.prior_width
                        + self.gate_weight_depth * self.lanes * 2
                        + self.gate_group_depth * self.lanes * self.gate_width),
        }

    def check_export(self, net, where="export"):
        """Raise ConfigError if an export does not fit this core (shape, bits, membrane)."""
        if net.membrane != self.membrane:
            raise ConfigError(f"{where}: membrane {net.membrane!r} but the core is {self.membrane!r}")
        if net.timesteps != self.timesteps:
            raise ConfigError(f"{where}: timesteps {net.timesteps} but the core runs {self.timesteps}")
        if len(net.layers) != len(self.layers):
            raise ConfigError(f"{where}: {len(net.layers)} layers but the core has {len(self.layers)}")
        for le, lp in zip(net.layers, self.layers):
            for key in ("kind", "in_channels", "in_height", "in_width", "out_channels",
                        "padding", "out_height", "out_width", "pool"):
                if getattr(le, key) != getattr(lp, key):
                    raise ConfigError(f"{where}: layer {lp.index} {key} is {getattr(le, key)} "
                                      f"but the core has {getattr(lp, key)}")
            if tuple(le.kernel) != lp.kernel or le.weight_bits != self.weight_bits:
                raise ConfigError(f"{where}: layer {lp.index} kernel/weight bits do not match the core")
            if le.spatial_pruning and not self.spatial_pruning:
                raise ConfigError(f"{where}: layer {lp.index} has a spatial-pruning threshold "
                                  "but the core was built without spatial pruning "
                                  "(pruning.spatial_ratio: 0, or hardware.skipping: false)")
            if le.gated and not lp.gated:
                raise ConfigError(f"{where}: layer {lp.index} has a channel gate but the core "
                                  "was built without channel gating "
                                  "(pruning.channel_gate_threshold: 0, or hardware.skipping: false)")


def record_fields(p: CoreParams) -> list:
    """Output record fields, LSB first: (name, width)."""
    return [("kind", 2), ("layer", bits_for(len(p.layers))), ("step", bits_for(p.timesteps)),
            ("pos", bits_for(p.max_positions)), ("group", bits_for(p.max_groups)),
            ("data", p.record_data_width)]


def param_fields(p: CoreParams) -> list:
    """Parameter-load fields, LSB first: (name, width)."""
    return [("target", 3), ("addr", p.param_addr_width), ("lane", bits_for(p.lanes)),
            ("data", p.param_data_width)]


def pack_fields(fields, **values) -> int:
    word, off = 0, 0
    for name, width in fields:
        v = values.get(name, 0)
        word |= (v & ((1 << width) - 1)) << off
        off += width
    return word


def unpack_fields(fields, word: int) -> dict:
    out, off = {}, 0
    for name, width in fields:
        out[name] = (word >> off) & ((1 << width) - 1)
        off += width
    return out
