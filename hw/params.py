"""Core parameters derived from a config: memory maps, widths, record layout (no Amaranth).

The generator (hw.core), the build report (hw.build) and the testbench (sim) all read the
same :class:`CoreParams`, so addresses and bit positions are defined once.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from project_config import Config, ConfigError
from project_config.geometry import (MAX_ACC_WIDTH, PACK_GROUPS, GeometryView, LayerGeometry,
                                     first_difference)

# Signature record data: CRC-32 at [0, 32), spike count and work counters above.
SIGNATURE_CRC_WIDTH = 32
# Group g's weights live in weight bank g mod PACK_GROUPS (project_config.geometry).


def bits_for(n: int) -> int:
    """Bits of an unsigned counter holding 0 .. n-1 (at least 1)."""
    return max(1, (n - 1).bit_length())


@dataclass(frozen=True)
class LayerPlan(GeometryView):
    """One layer as the core runs it: the layer's geometry (read as attributes) plus its
    group count and its regions in each memory."""
    geometry: LayerGeometry
    groups: int            # ceil(out_channels / lanes)
    weight_base: int       # word address in weight_sram_even (the even groups' weights)
    weight_base_odd: int   # word address in weight_sram_odd (the odd groups' weights)
    group_base: int        # word address in threshold_sram / channel_mask_sram
    membrane_base: int     # word address in membrane_sram (spiking layers)
    position_base: int     # bit address in position_mask_sram (spiking layers)
    # Runtime pruning (docs/INTEGER_SPEC.md section 5), when the core has it:
    prior_base: int = 0    # word address in prior_sram of this layer's channel sums
    gate_weight_base: int = 0   # word address in gate_weight_sram (gated layers)
    gate_group_base: int = 0    # word address in gate_threshold_sram (gated layers)
    gated: bool = False    # this layer has a channel gate (layers >= 1 of a gating core)
    # Window fetch (docs/HARDWARE.md, "Window fetch"): the whole kernel window is read in one
    # cycle from `taps` copies of the input map and issued as one word of taps x C_in inputs.
    window_fetch: bool = False

    @property
    def issue_width(self) -> int:
        """Inputs of one fetched word: taps x C_in with window fetch, else C_in."""
        return self.taps * self.in_channels if self.window_fetch else self.in_channels

    @property
    def act_width(self) -> int:
        # Bit-plane layout: bit k of channel c's value at k * in_channels + c.
        return self.in_channels * self.x_bits

    @property
    def act_copies(self) -> int:
        """Copies of the input map: one per tap with window fetch."""
        return self.taps if self.window_fetch else 1

    @property
    def act_depth(self) -> int:
        return self.in_height * self.in_width

    @property
    def windows(self) -> int:
        """Packing windows: ceil(groups / PACK_GROUPS)."""
        return -(-self.groups // PACK_GROUPS)

    def weight_addr(self, group: int, tap: int, ci: int) -> tuple[int, int]:
        """(bank, word address) of group ``group``'s codes for (``tap``, ``ci``): both banks
        hold a window's two groups at the same offset from their layer's base."""
        bank, window = group % PACK_GROUPS, group // PACK_GROUPS
        base = self.weight_base_odd if bank else self.weight_base
        return bank, base + (window * self.taps + tap) * self.in_channels + ci


def hardware_form(cfg: Config) -> tuple[int, str]:
    """(weight bits, membrane) of a config the core can run; ConfigError naming the key if not."""
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
    return bits, membrane


def plan_layers(layers: list, lanes: int, channel_gating: bool) -> tuple[list, dict]:
    """Lay the layers out in the core's memories: (plans, {memory: depth in words})."""
    plans = []
    depth = dict.fromkeys(("weight", "weight_odd", "group", "membrane", "position", "prior", "gate_weight",
                           "gate_group"), 0)
    for geom in layers:
        groups = -(-geom.out_channels // lanes)
        gated = channel_gating and geom.kind == "conv" and geom.index > 0
        plan = LayerPlan(geom, groups, weight_base=depth["weight"],
                         weight_base_odd=depth["weight_odd"], group_base=depth["group"],
                         membrane_base=depth["membrane"], position_base=depth["position"],
                         prior_base=depth["prior"], gate_weight_base=depth["gate_weight"],
                         gate_group_base=depth["gate_group"], gated=gated)
        plans.append(plan)
        depth["weight"] += plan.windows * plan.taps * geom.in_channels
        depth["weight_odd"] += groups // PACK_GROUPS * plan.taps * geom.in_channels
        depth["group"] += groups
        if geom.kind == "conv":
            depth["membrane"] += plan.positions * groups
            depth["position"] += plan.positions
            depth["prior"] += groups
        if gated:
            depth["gate_weight"] += groups * geom.in_channels
            depth["gate_group"] += groups
    if not channel_gating:
        depth["prior"] = 0
    return plans, depth


class CoreParams:
    """Everything the generated core is sized by, computed from a validated Config."""

    def __init__(self, cfg: Config, skipping: bool | None = None):
        bits, membrane = hardware_form(cfg)
        self.config_path = cfg.path
        self.name = cfg.name
        self.lanes = cfg.hardware["lanes"]
        # False: a reference core that issues every input, position and group (docs/HARDWARE.md).
        self.skipping = cfg.hardware["skipping"] if skipping is None else bool(skipping)
        # Runtime pruning hardware: built when the config's pruning section turns it on. The
        # reference core has none (its cycles, skip_disabled_cycles(), depend on the shape only).
        self.spatial_pruning = self.skipping and cfg.pruning["spatial_ratio"] > 0.0
        self.channel_gating = (self.skipping and cfg.pruning["channel_gate_threshold"] > 0.0
                               and len(cfg.spiking_layers) > 1)
        self.weight_bits = bits
        self.max_shift = cfg.layers[0].max_shift
        self.membrane = membrane
        self.membrane_bits = 2 if membrane == "ternary" else 1
        self.levels = 3 if membrane == "ternary" else 2
        self.timesteps = cfg.timesteps
        inp = cfg.model["input"]
        self.input_channels, self.input_height, self.input_width = (
            inp["channels"], inp["height"], inp["width"])
        self.input_bits = inp["bits"]
        self.layers, depth = plan_layers(cfg.layers, self.lanes, self.channel_gating)
        # The reference core keeps one tap per word (its cycles have a closed form).
        self.window_pairs = cfg.hardware["window_pairs"] if self.skipping else 0
        self.layers = [dataclasses.replace(lp, window_fetch=True)
                       if lp.kind == "conv" and lp.taps * lp.in_channels <= self.window_pairs
                       else lp for lp in self.layers]
        self.weight_depth, self.group_depth = depth["weight"], depth["group"]
        self.weight_depth_odd = depth["weight_odd"]
        self.membrane_depth, self.position_depth = depth["membrane"], depth["position"]
        self.prior_depth = depth["prior"]
        self.gate_weight_depth, self.gate_group_depth = depth["gate_weight"], depth["gate_group"]
        self.acc_width = max(p.acc_width for p in self.layers)
        if self.acc_width > MAX_ACC_WIDTH:
            raise ConfigError(f"{cfg.path}: quant.weight_bits: {bits}-bit PoT needs a "
                              f"{self.acc_width}-bit accumulator (max {MAX_ACC_WIDTH})")
        self._size_words()

    def _size_words(self):
        """Widths of the pruning datapath, the counters and the stream words."""
        plans, spiking = self.layers, self.layers[:-1]
        # Signed widths: a prior sum |P| <= positions; a gate score |z| <= C_in * positions of
        # the previous layer, and its thresholds reach bound + 1; e: |e| <= C_out.
        self.prior_width = max(p.positions for p in spiking).bit_length() + 1
        self.gate_width = max([p.in_channels * q.positions for p, q in zip(spiking[1:], spiking)]
                              + [1]).bit_length() + 2
        self.importance_width = max(p.out_channels for p in spiking).bit_length() + 1
        self.logit_width = self.classifier.logit_width(self.timesteps)
        self.max_in_channels = max(p.in_channels for p in plans)
        self.max_issue_width = max(p.issue_width for p in plans)
        self.max_x_bits = max(p.x_bits for p in plans)
        self.max_taps = max(p.taps for p in plans)
        self.max_positions = max(p.positions for p in plans)
        self.max_groups = max(p.groups for p in plans)
        self.max_out_channels = max(p.out_channels for p in spiking)
        # Scheduler counter widths: any map height or width, any kernel height or width.
        self.max_dim = max(max(p.in_height, p.in_width, p.out_height, p.out_width) for p in plans)
        self.max_kernel = max(max(p.kernel) for p in plans)
        self.threshold_lane_width = self.levels * 3 * self.acc_width
        # Spikes counted per (layer, step): at most every lane of every visited record.
        self.spike_count_width = bits_for(max(p.positions * p.groups * self.lanes
                                              for p in spiking) + 2)
        # Work counters per (layer, step), sent with the signature: inputs issued to the
        # lanes (events), lane additions of computed channels (synaptic ops), and computed
        # (position, group) neuron-unit updates. Bounds: every input of every tap, every lane.
        events_max = max(p.positions * p.groups * p.taps * p.in_channels for p in spiking)
        self.event_count_width = bits_for(events_max + 2)
        self.synaptic_count_width = bits_for(events_max * self.lanes + 2)
        self.update_count_width = bits_for(max(p.positions * p.groups for p in spiking) + 2)
        self.signature_width = (SIGNATURE_CRC_WIDTH + self.spike_count_width
                                + self.event_count_width + self.synaptic_count_width
                                + self.update_count_width)
        self.record_data_width = max(self.lanes * (1 + self.membrane_bits),
                                     self.lanes * self.logit_width, self.signature_width)
        self.param_data_width = max(self.lanes * self.weight_bits, self.threshold_lane_width,
                                    self.lanes, 1, 2 * self.lanes, self.gate_width,
                                    1 + self.importance_width)
        # Weight transfers address bank b's word a as 2a + b.
        self.param_addr_width = bits_for(max(2 * self.weight_depth, self.group_depth,
                                             self.position_depth, self.gate_weight_depth, 2))

    @property
    def spiking_layers(self):
        return self.layers[:-1]

    def skip_disabled_cycles(self) -> dict:
        """Cycles of one inference on the core built with ``skipping`` off, in closed form
        (no stalls on any stream). It visits every position and group and issues every input
        channel of every kernel tap, so the count depends on the shape only:

        - per (layer, step): the MASK pass, 2 per group;
        - per (position, packing window): WINDOW; per group in it ``2 + taps * C_in`` in
          ACCUMULATE (one cycle to fetch the first word, one to load it, then one per
          channel) and DRAIN, EXPAND between a pair's two; then NEURON for each group:
          ``taps * C_in + 5`` for a one-group window, ``2 * (taps * C_in) + 10`` for a pair;
        - per position: POSITION_CHECK, which also sets up the first window (its WINDOW
          cycle); the classifier's one position: POSITION, then its first WINDOW;
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
            issue = lp.taps * lp.in_channels
            pairs, singles = lp.groups // PACK_GROUPS, lp.groups % PACK_GROUPS
            per_position = pairs * (2 * issue + 10) + singles * (issue + 5)
            if lp.kind == "fc":
                body.append(2 * lp.groups + 1 + per_position)    # MASK, POSITION, windows
            else:
                windows = lp.positions // (lp.pool * lp.pool)
                body.append(2 * lp.groups + lp.positions * per_position + windows + 1)
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
            "weights": (self.weight_depth + self.weight_depth_odd) * self.lanes * self.weight_bits,
            "membrane": self.membrane_depth * self.lanes * self.membrane_bits,
            "spikes_and_inputs": sum(p.act_depth * p.act_width * p.act_copies for p in self.layers),
            "thresholds": self.group_depth * self.lanes * self.threshold_lane_width,
            "channel_masks": self.group_depth * self.lanes,
            "position_masks": self.position_depth,
            "pruning": (self.prior_depth * self.lanes * self.prior_width
                        + (self.position_depth * self.importance_width if self.spatial_pruning else 0)
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
            key = first_difference(le.geometry, lp.geometry)
            if key is not None:
                raise ConfigError(f"{where}: layer {lp.index} {key} is {getattr(le, key)} "
                                  f"but the core has {getattr(lp, key)}")
            if le.spatial_pruning and not self.spatial_pruning:
                raise ConfigError(f"{where}: layer {lp.index} has a spatial-pruning threshold "
                                  "but the core was built without spatial pruning "
                                  "(pruning.spatial_ratio: 0, or hardware.skipping: false)")
            if le.gated and not lp.gated:
                raise ConfigError(f"{where}: layer {lp.index} has a channel gate but the core "
                                  "was built without channel gating "
                                  "(pruning.channel_gate_threshold: 0, or hardware.skipping: false)")
