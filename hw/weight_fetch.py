"""Weight blocks from external memory into an on-chip double buffer, over an AXI4 read master.

The unit a core with ``hardware.weight_memory: external`` needs between its lanes and DRAM
(docs/HARDWARE.md, "Weights in external memory"): the scheduler asks for the next block
of weight words (a packing window's codes) while the lanes read the current one from the
other bank at the SRAM's one-cycle latency. It is built and tested on its own; the core
does not instantiate it yet.
"""
from __future__ import annotations

from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .params import bits_for
from .sram import Sram

AXI_BOUNDARY = 4096             # an AXI4 burst must not cross a 4 KB address boundary
AXI_MAX_BURST = 256             # beats of an INCR burst


class WeightFetch(wiring.Component):
    """Fetches blocks of words over an AXI4 read master into ``banks`` buffer banks.

    A fetch request names a byte address and a word count; it fills the next bank in
    round-robin order once that bank is free. The request is split into INCR bursts of at
    most ``max_burst`` beats that never cross a 4 KB boundary, and up to
    ``max_outstanding`` bursts are in flight at once (one ID, so their data return in
    order). A buffer word is ``ceil(word_width / data_width)`` beats, the first beat in
    its low bits. When a block's last beat lands, ``filled`` rises for its bank and stays
    high until the consumer pulses that bank's ``release``.

    Parameters
    ----------
    word_width : int
        Bits of a buffer word (>= 1), e.g. ``lanes * weight_bits``.
    bank_words : int
        Words a bank holds (>= 1): the largest block.
    data_width : int
        AXI RDATA width: 8, 16, ..., 1024.
    addr_width : int
        AXI address width (12 to 64).
    banks : int
        Buffer banks (>= 2 for a fetch to overlap the consumer's reads).
    max_burst : int
        Beats of the longest burst, 1 to 256.
    max_outstanding : int
        Bursts in flight at most (>= 1).

    Members
    -------
    fetch : In(stream.Signature(addr, words))
        A block: ``addr`` its byte address (aligned to ``data_width // 8``), ``words`` its
        length in words (1 to ``bank_words``; 0 fills the bank at once, with nothing read).
        Ready when no block is being fetched and the next bank is free.
    fill_bank : Out(range(banks))
        The bank the next (or current) fetch fills.
    filled : Out(banks)
        Bank ``b`` holds a complete block.
    release : In(banks)
        Pulse bit ``b``: the consumer is done with bank ``b`` (it may be fetched into again).
    rd_bank, rd_addr : In
        Buffer read address: bank and word.
    rd_data : Out(word_width)
        The word at the previous cycle's read address (latency 1, as the SRAM).
    error : Out(1)
        Sticky: a read response was not OKAY.
    m_axi_* : the AXI4 read address and data channels (ARID 0, ARBURST INCR, ARSIZE the
        full data width).

    Throughput: one beat per cycle (RREADY is always high: a fetch only starts into a free
    bank, so every beat has its place). Latency: the memory's, plus one cycle from the
    fetch's transfer to its first ARVALID.
    """

    def __init__(self, *, word_width: int, bank_words: int, data_width: int = 64,
                 addr_width: int = 32, banks: int = 2, max_burst: int = 16,
                 max_outstanding: int = 4):
        for name, v, lo, hi in (("word_width", word_width, 1, None),
                                ("bank_words", bank_words, 1, None),
                                ("addr_width", addr_width, 12, 64), ("banks", banks, 1, None),
                                ("max_burst", max_burst, 1, AXI_MAX_BURST),
                                ("max_outstanding", max_outstanding, 1, None)):
            if not isinstance(v, int) or isinstance(v, bool) or v < lo or (hi and v > hi):
                raise ValueError(f"{name} must be an integer from {lo}"
                                 f"{f' to {hi}' if hi else ' up'}, not {v!r}")
        if data_width not in (8, 16, 32, 64, 128, 256, 512, 1024):
            raise ValueError(f"data_width must be a power of two from 8 to 1024, not {data_width!r}")
        self.word_width, self.bank_words, self.banks = word_width, bank_words, banks
        self.data_width, self.addr_width = data_width, addr_width
        self.max_burst, self.max_outstanding = max_burst, max_outstanding
        self.beats_per_word = -(-word_width // data_width)
        self.max_beats = bank_words * self.beats_per_word
        request = data.StructLayout({"addr": addr_width, "words": bits_for(bank_words + 1)})
        super().__init__({
            "fetch": In(stream.Signature(request)),
            "fill_bank": Out(range(banks)), "filled": Out(banks), "release": In(banks),
            "rd_bank": In(range(banks)), "rd_addr": In(range(bank_words)),
            "rd_data": Out(word_width), "error": Out(1),
            "m_axi_arid": Out(1), "m_axi_araddr": Out(addr_width), "m_axi_arlen": Out(8),
            "m_axi_arsize": Out(3), "m_axi_arburst": Out(2), "m_axi_arvalid": Out(1),
            "m_axi_arready": In(1),
            "m_axi_rid": In(1), "m_axi_rdata": In(data_width), "m_axi_rresp": In(2),
            "m_axi_rlast": In(1), "m_axi_rvalid": In(1), "m_axi_rready": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        nbytes = self.data_width // 8
        beat_shift = nbytes.bit_length() - 1
        B = self.beats_per_word
        buf = Sram("weight_buffer", width=self.word_width, depth=self.banks * self.bank_words)
        buf.add_to(m)

        filling = Signal()
        bank = Signal(range(self.banks))
        ar_addr = Signal(self.addr_width)
        ar_left = Signal(bits_for(self.max_beats + 1))       # beats not yet requested
        r_left = Signal(bits_for(self.max_beats + 1))        # beats not yet received
        outstanding = Signal(range(self.max_outstanding + 1))
        word = Signal(B * self.data_width)                    # the word being assembled
        beat = Signal(range(max(B, 2)))                # (one bit even for 1-beat words)
        wptr = Signal(range(self.bank_words + 1))
        filled = Signal(self.banks)

        # Burst length: the beats left, the burst limit and the beats to the 4 KB boundary.
        to_boundary = Signal(range(AXI_BOUNDARY // nbytes + 1))
        capped = Signal(range(AXI_MAX_BURST + 1))
        burst = Signal(range(AXI_MAX_BURST + 1))
        m.d.comb += to_boundary.eq((AXI_BOUNDARY - ar_addr[:12]) >> beat_shift)
        m.d.comb += capped.eq(Mux(ar_left < self.max_burst, ar_left, self.max_burst))
        m.d.comb += burst.eq(Mux(to_boundary < capped, to_boundary, capped))
        ar_fire = Signal()
        m.d.comb += [
            self.m_axi_arid.eq(0), self.m_axi_arburst.eq(0b01), self.m_axi_arsize.eq(beat_shift),
            self.m_axi_araddr.eq(ar_addr), self.m_axi_arlen.eq(burst - 1),
            # Valid only ever falls at its own transfer: outstanding can only drop meanwhile.
            self.m_axi_arvalid.eq(filling & (ar_left != 0) & (outstanding < self.max_outstanding)),
            ar_fire.eq(self.m_axi_arvalid & self.m_axi_arready),
            self.m_axi_rready.eq(1),
        ]
        with m.If(ar_fire):
            m.d.sync += [ar_addr.eq(ar_addr + (burst << beat_shift)), ar_left.eq(ar_left - burst)]

        r_fire = Signal()
        m.d.comb += r_fire.eq(self.m_axi_rvalid & filling & (r_left != 0))
        last_of_burst = r_fire & self.m_axi_rlast
        m.d.sync += outstanding.eq(outstanding + ar_fire - last_of_burst)
        with m.If(r_fire & (self.m_axi_rresp != 0)):
            m.d.sync += self.error.eq(1)
        assembled = Signal(B * self.data_width)
        m.d.comb += assembled.eq(Cat(word[self.data_width:], self.m_axi_rdata) if B > 1
                                 else self.m_axi_rdata)
        with m.If(r_fire):
            m.d.sync += [word.eq(assembled), r_left.eq(r_left - 1)]
            with m.If(beat == B - 1):
                m.d.sync += [beat.eq(0), wptr.eq(wptr + 1)]
                m.d.comb += [buf.waddr.eq(bank * self.bank_words + wptr),
                             buf.wdata.eq(assembled[:self.word_width]), buf.wen.eq(1)]
            with m.Else():
                m.d.sync += beat.eq(beat + 1)

        done = Signal()
        m.d.comb += done.eq(filling & (r_left == 0) & (ar_left == 0))
        next_bank = Mux(bank == self.banks - 1, 0, bank + 1)
        m.d.comb += [self.fetch.ready.eq(~filling & ~filled.bit_select(bank, 1)),
                     self.fill_bank.eq(bank), self.filled.eq(filled)]
        set_bits = Signal(self.banks)
        with m.If(self.fetch.valid & self.fetch.ready):
            beats = self.fetch.payload.words * B
            m.d.sync += [filling.eq(1), ar_addr.eq(self.fetch.payload.addr), ar_left.eq(beats),
                         r_left.eq(beats), wptr.eq(0), beat.eq(0)]
        with m.If(done):
            m.d.sync += [filling.eq(0), bank.eq(next_bank)]
            m.d.comb += set_bits.eq(1 << bank)
        m.d.sync += filled.eq((filled | set_bits) & ~self.release)

        m.d.comb += buf.raddr.eq(self.rd_bank * self.bank_words + self.rd_addr)
        m.d.comb += self.rd_data.eq(buf.rdata)
        return m
