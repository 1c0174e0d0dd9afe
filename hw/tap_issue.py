"""Tap fetch and issue: one packed group's kernel taps, one nonzero input per cycle
(docs/HARDWARE.md, "Schedule"; the core's ACCUMULATE state)."""
from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .logic import first_set
from .params import bits_for


class TapIssue(wiring.Component):
    """Walks a position's kernel taps for one packed group: reads each tap's input word, one
    read in flight, and issues the word's inputs to the lanes one per cycle.

    Parameters
    ----------
    channels : int
        Inputs of the widest word (>= 1): a tap's C_in, or a whole window with window fetch.
    plane_widths : sequence of int
        Width of each bit plane of a word (``len`` = the widest input's bits; each in
        ``[1, channels]``): plane ``k`` holds bit ``k`` of every input, zero above the layer's
        own bits.
    max_taps : int
        Most kernel taps of a layer (>= 1).
    max_kernel : int
        Widest kernel side of a layer (>= 1; default 255): sizes ``kw``, ``ky`` and ``kx``.
    skipping : bool
        Issue only nonzero inputs of taps inside the map. Off: every tap is read and all
        ``cin_mask`` inputs are issued, those of taps outside the map as 0.

    Members
    -------
    start : In(1)
        Start a packed group: the tap walk restarts at tap 0 and nothing is current.
    start_word : In(1)
        With ``start``: the whole window is already one word (window fetch), given by
        ``start_planes`` and ``start_nz``; nothing is left to fetch.
    start_planes, start_nz : In
        That word's planes (concatenated, plane 0 first) and its nonzero map.
    run : In(1)
        Step the walk this cycle (ACCUMULATE). ``start`` wins over ``run``. Once it has
        risen, hold it until ``done``: the word read follows (``ky``, ``kx``) with a fixed
        1-cycle latency, so the walk cannot pause.
    taps, kw : In
        The layer's kernel taps and kernel width (``kw``: ``bits_for(max_kernel + 1)`` bits).
    cin_mask, x_mask : In
        The layer's valid inputs of a word, and its input bits.
    ky, kx : Out
        The next tap to fetch (``bits_for(max_kernel + 1)`` and ``bits_for(max_kernel)``
        bits: ``ky`` reaches the kernel height after the last tap); the core turns it into
        the word's address and ``tap_inside``.
    tap_inside : In(1)
        Tap (``ky``, ``kx``) is inside the input map (comb from ``ky``, ``kx``).
    fetched_planes, fetched_nz : In
        The word read for the tap fetched last cycle (a 1-cycle read) and its nonzero map.
    issue : Out(1)
        ``run`` and an input is issued this cycle: input ``channel`` of tap ``tap``, value
        ``x`` (masked by ``x_mask``).
    tap, channel, x : Out
    done : Out(1)
        The walk ends with this cycle: no tap left, no read in flight, no input left after
        this cycle's issue.

    Latency: the first word's inputs issue two cycles after ``start`` (one fetch, one read).
    Throughput: one input per cycle; a tap costs max(1, nonzero inputs) cycles once the
    walk is under way, a tap outside the map one fetch slot and no read; the cycles in
    ``run`` from ``start`` to ``done`` are ``hw.perf.accumulate_cycles`` of the taps'
    nonzero counts (``position_accumulate`` for a window word).
    """

    def __init__(self, *, channels: int, plane_widths, max_taps: int, max_kernel: int = 255,
                 skipping: bool = True):
        for name, v in (("channels", channels), ("max_taps", max_taps),
                        ("max_kernel", max_kernel)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        plane_widths = tuple(plane_widths)
        if not plane_widths or any(not isinstance(w, int) or isinstance(w, bool)
                                   or not 1 <= w <= channels for w in plane_widths):
            raise ValueError(f"plane_widths must be a non-empty sequence of integers in "
                             f"[1, channels={channels}], not {plane_widths!r}")
        self.channels, self.plane_widths = channels, plane_widths
        self.max_taps, self.max_kernel, self.skipping = max_taps, max_kernel, bool(skipping)
        xb, tw = len(plane_widths), bits_for(max_taps + 1)
        words = sum(plane_widths)
        super().__init__({
            "start": In(1), "start_word": In(1), "start_planes": In(words),
            "start_nz": In(channels), "run": In(1),
            "taps": In(tw), "kw": In(bits_for(max_kernel + 1)), "cin_mask": In(channels),
            "x_mask": In(xb),
            "ky": Out(bits_for(max_kernel + 1)), "kx": Out(bits_for(max_kernel)),
            "tap_inside": In(1),
            "fetched_planes": In(words), "fetched_nz": In(channels),
            "issue": Out(1), "tap": Out(bits_for(max_taps)),
            "channel": Out(bits_for(channels)), "x": Out(xb), "done": Out(1),
        })

    def _planes(self, word):
        out, lo = [], 0
        for w in self.plane_widths:
            out.append(word[lo:lo + w])
            lo += w
        return out

    def elaborate(self, platform):
        m = Module()
        n = self.channels
        fetch_tap = Signal(len(self.taps))         # next tap to fetch (ky, kx)
        read_pending = Signal()                    # a word read was issued last cycle
        read_inside = Signal()                     # ... for a tap inside the map
        read_tap = Signal(len(self.tap))
        nonzero = Signal(n)                        # inputs of the current word still to issue
        xplanes = [Signal(w, name=f"xplane{k}") for k, w in enumerate(self.plane_widths)]
        fetched = self._planes(self.fetched_planes)

        ci = first_set(m, nonzero, "event_channel")
        m.d.comb += [
            self.channel.eq(ci),
            self.x.eq(Cat(*(plane.bit_select(ci, 1) for plane in xplanes)) & self.x_mask),
        ]
        remaining = Signal(n)
        m.d.comb += remaining.eq(nonzero & ~(Const(1, n) << ci)[:n])
        after = Signal(n)                          # the current word's inputs after this cycle
        taps_left = fetch_tap < self.taps
        m.d.comb += self.done.eq(~taps_left & ~read_pending & ~remaining.any())

        with m.If(self.start):
            m.d.sync += [fetch_tap.eq(0), self.ky.eq(0), self.kx.eq(0), read_pending.eq(0),
                         nonzero.eq(0)]
            with m.If(self.start_word):
                m.d.sync += [fetch_tap.eq(self.taps), self.tap.eq(0),
                             nonzero.eq(self.start_nz)]
                m.d.sync += [xp.eq(w) for xp, w in zip(xplanes, self._planes(self.start_planes))]
        with m.Elif(self.run):
            # Issue one nonzero input of the current word; take the word read last cycle (if
            # any) as the next current word; read the next tap's word when the current one
            # will be used up by the next cycle, so words follow each other without bubbles.
            m.d.comb += self.issue.eq(nonzero.any())
            with m.If(remaining.any()):
                m.d.comb += after.eq(remaining)
                m.d.sync += nonzero.eq(remaining)
            with m.Elif(read_pending):
                m.d.sync += self.tap.eq(read_tap)
                if self.skipping:
                    m.d.comb += after.eq(self.fetched_nz)
                    m.d.sync += nonzero.eq(self.fetched_nz)
                    m.d.sync += [xp.eq(f) for xp, f in zip(xplanes, fetched)]
                else:
                    # Padding taps are issued too, as zeros.
                    m.d.comb += after.eq(self.cin_mask)
                    m.d.sync += nonzero.eq(self.cin_mask)
                    m.d.sync += [xp.eq(Mux(read_inside, f, 0)) for xp, f in zip(xplanes, fetched)]
            with m.Else():
                m.d.sync += nonzero.eq(0)
            at_most_one = (after & (after - 1)[:n]) == 0
            m.d.sync += read_pending.eq(0)
            with m.If(taps_left & at_most_one):
                if self.skipping:
                    with m.If(self.tap_inside):
                        m.d.sync += [read_pending.eq(1), read_tap.eq(fetch_tap)]
                else:
                    m.d.sync += [read_pending.eq(1), read_tap.eq(fetch_tap),
                                 read_inside.eq(self.tap_inside)]
                m.d.sync += fetch_tap.eq(fetch_tap + 1)
                with m.If(self.kx == self.kw - 1):
                    m.d.sync += [self.kx.eq(0), self.ky.eq(self.ky + 1)]
                with m.Else():
                    m.d.sync += self.kx.eq(self.kx + 1)
        return m
