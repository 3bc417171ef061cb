"""Register-tile micro-kernel steps, written in LLVM vectors, shared by the CPU kernels.

A tile of accumulators lives in a stack array (`stack_tile`) that LLVM promotes to vector
registers; each step (`fma_tile`, `cfma_tile`) loads a few input vectors once and multiplies
them into every row of the tile with one broadcast weight (or weight pair) per row; a
finished tile leaves through `store_lanes` (or plain stores, or `copy_lanes`).  Two vector
steps outside the tiles write runs that go to memory anyway with non-temporal stores where
asked (`copy_lanes`, `combine_lanes`).  The tile's shape is given by
`convbench_kernels.cpu.target.token` s, so it is a compile-time constant and the loops over
it unroll.  Used by `convbench_kernels.cpu.direct` (real) and `convbench_kernels.cpu.fft_tiled`
(complex: the per-frequency channel GEMMs); `fma_tile_masked` and `fma_taps3_s2`, whose
masked loads read an unpadded image in place, by `convbench_kernels.cpu.depthwise`;
`outer_tile`, whose operands are both vectors, by `convbench_kernels.cpu.direct_weight`.  Two
whole-tile steps serve the Winograd weight gradient (`convbench_kernels.cpu.winograd_weight`):
`transpose_lanes` (a VL x VL block transposed in registers) and `transform_lanes` (a tile's
2-D transform, every element a vector of channels).
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def stack_tile(typingctx, like, rows, vecs, lanes):
    """A (rows, vecs * lanes) C array of ``like``'s dtype on the stack, uninitialized; the
    three sizes are `convbench_kernels.cpu.target.token` lengths (compile-time constants).

    A heap array (np.empty) would keep the accumulators in memory: LLVM cannot prove that it
    does not alias the input, so every FMA would load and store its accumulator.  A stack
    array (an ``alloca``) provably aliases nothing, and LLVM promotes it to registers.
    """
    if not all(isinstance(t, types.BaseTuple) for t in (rows, vecs, lanes)):
        return None
    dt = like.dtype
    nrows, cols = len(rows), len(vecs) * len(lanes)
    retty = types.Array(dt, 2, "C")

    def codegen(context, builder, signature, args):
        ptr = cgutils.alloca_once(builder, context.get_data_type(dt), size=nrows * cols)
        itemsize = context.get_abi_sizeof(context.get_data_type(dt))
        intp = lambda v: context.get_constant(types.intp, v)  # noqa: E731
        ary = context.make_array(retty)(context, builder)
        context.populate_array(ary, data=ptr, shape=[intp(nrows), intp(cols)],
                               strides=[intp(cols * itemsize), intp(itemsize)],
                               itemsize=intp(itemsize), meminfo=None)
        return ary._getvalue()

    return retty(like, rows, vecs, lanes), codegen


@intrinsic
def fma_tile(typingctx, acc, xf, xi, wf, wi, ws, rows, vecs, lanes):
    """``acc[r, :] += wf[wi + r * ws] * xf[xi : xi + cols]`` for every row r of the tile, as a
    micro-kernel step written in vectors: the ``len(vecs)`` input vectors are loaded once,
    then each row's weight is broadcast into one register and multiplied into that row's
    accumulators (fused multiply-adds).

    Registers live at once: ``rows * vecs`` accumulators, ``vecs`` inputs and one broadcast,
    the count `space` bounds by the register file.  Written out rather than left to LLVM's
    vectorizers, whose order of loads and broadcasts (and so the registers a tile needs)
    varies with the target: the same scalar loop nest spilled 6 x 2 tiles on AVX2.
    """
    if not all(isinstance(t, types.BaseTuple) for t in (rows, vecs, lanes)):
        return None
    dt = acc.dtype
    kb, nv, vl = len(rows), len(vecs), len(lanes)

    def codegen(context, builder, sig, args):
        acca, xfa, xio, wfa, wio, wso = args[:6]
        vty = ir.VectorType(context.get_data_type(dt), vl)
        xptr = cgutils.gep(builder, _data(context, builder, sig, 1, xfa), xio)
        xv = [builder.load(builder.bitcast(cgutils.gep(builder, xptr, v * vl),
                                           vty.as_pointer()), align=dt.bitwidth // 8)
              for v in range(nv)]
        _fma_rows(context, builder, dt, _data(context, builder, sig, 0, acca),
                  _data(context, builder, sig, 3, wfa), wio, wso, xv, kb)
        return context.get_dummy_value()

    return (types.void(acc, xf, types.uint64, wf, types.int64, types.int64, rows, vecs,
                       lanes), codegen)


@intrinsic
def fma_tile_masked(typingctx, acc, xf, xi, lo, hi, wf, wi, ws, rows, vecs, lanes):
    """`fma_tile` with the input's elements ``e`` of the tile outside ``lo <= e < hi`` read
    as zero, by masked loads, which touch no memory there: ``acc[r, e] += wf[wi + r * ws] *
    (xf[xi + e] if lo <= e < hi else 0)``.  So a kernel can read an unpadded image in place,
    its padding being the masked-off elements (depthwise's row strips); ``xi`` is signed, as
    it may point before the array where the mask starts later.  The masks depend on
    ``lo`` and ``hi`` alone: in a loop where they do not change, LLVM computes them once.
    """
    return _masked_step(acc, xf, wf, rows, vecs, lanes,
                        lambda load, builder, nv, vl: [[load(v * vl) for v in range(nv)]])


@intrinsic
def fma_taps3_s2(typingctx, acc, xf, xi, lo, hi, wf, wi, ws, rows, vecs, lanes):
    """The three taps of a filter row at stride 2, masked as `fma_tile_masked`:
    ``acc[r, e] += sum_j wf[wi + j + r * ws] * (xf[xi + 2 e + j] if lo <= 2 e + j < hi else
    0)`` for j = 0, 1, 2.  Taps 0 and 1 are the even and odd elements of the same two
    vectors, tap 2 the even ones of two vectors two elements on: four masked loads and
    three shuffles a vector of the tile (each tap column alone took six loads).
    """

    def taps(load, builder, nv, vl):
        def lanes_of(a, b, first):
            return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(ir.IntType(32), vl), [
                first + 2 * lane for lane in range(vl)]))

        out = [[], [], []]
        for v in range(nv):
            p0, p1 = load(2 * v * vl), load(2 * v * vl + vl)
            q0, q1 = load(2 * v * vl + 2), load(2 * v * vl + vl + 2)
            out[0].append(lanes_of(p0, p1, 0))
            out[1].append(lanes_of(p0, p1, 1))
            out[2].append(lanes_of(q0, q1, 0))
        return out

    return _masked_step(acc, xf, wf, rows, vecs, lanes, taps)


def _masked_step(acc, xf, wf, rows, vecs, lanes, taps):
    """Typing and code of a masked step (`fma_tile_masked`, `fma_taps3_s2`): ``taps(load,
    builder, nv, vl)`` gives, per tap j, the tile's ``nv`` input vectors, which go into the
    rows with weights ``wf[wi + j + r * ws]``."""
    if not all(isinstance(t, types.BaseTuple) for t in (rows, vecs, lanes)):
        return None
    dt = acc.dtype
    kb, nv, vl = len(rows), len(vecs), len(lanes)

    def codegen(context, builder, sig, args):
        acca, xfa, xio, lov, hiv, wfa, wio, wso = args[:8]
        load = _MaskedLoads(context, builder, sig, dt, vl, xfa, xio, lov, hiv)
        tile, wptr = _data(context, builder, sig, 0, acca), _data(context, builder, sig, 5, wfa)
        for j, xv in enumerate(taps(load, builder, nv, vl)):
            _fma_rows(context, builder, dt, tile, wptr,
                      builder.add(wio, ir.Constant(wio.type, j)), wso, xv, kb)
        return context.get_dummy_value()

    return (types.void(acc, xf, types.int64, types.int64, types.int64, wf, types.int64,
                       types.int64, rows, vecs, lanes), codegen)


class _MaskedLoads:
    """``load(q0)``: the vector of elements ``q0 .. q0 + VL - 1`` after ``xf[xi]`` (an
    intrinsic's arguments 1 and 2), those outside ``lo <= q < hi`` zero and not read."""

    def __init__(self, context, builder, sig, dt, vl, xfa, xio, lov, hiv):
        self.builder = builder
        self.vty = ir.VectorType(context.get_data_type(dt), vl)
        self.ity = ir.VectorType(ir.IntType(64), vl)
        mty = ir.VectorType(ir.IntType(1), vl)
        self.align = ir.Constant(ir.IntType(32), dt.bitwidth // 8)
        self.fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(self.vty, [self.vty.as_pointer(), self.align.type,
                                                       mty, self.vty]),
            f"llvm.masked.load.v{vl}{_suffix(dt)}.p0")
        self.xptr = cgutils.gep(builder, _data(context, builder, sig, 1, xfa), xio)
        self.lo, self.hi = _splat(builder, lov, self.ity), _splat(builder, hiv, self.ity)

    def __call__(self, q0):
        b = self.builder
        q = ir.Constant(self.ity, [q0 + lane for lane in range(self.vty.count)])
        mask = b.and_(b.icmp_signed(">=", q, self.lo), b.icmp_signed("<", q, self.hi))
        ptr = b.bitcast(cgutils.gep(b, self.xptr, q0), self.vty.as_pointer())
        return b.call(self.fn, [ptr, self.align, mask, ir.Constant(self.vty, None)])


def _data(context, builder, sig, i, value):
    """The data pointer of the array that is argument ``i`` of ``sig``."""
    return context.make_array(sig.args[i])(context, builder, value).data


def _suffix(dt) -> str:
    """The LLVM intrinsics' name suffix of a float dtype's elements."""
    return "f32" if dt.bitwidth == 32 else "f64"


def _splat(builder, x, vty):
    """The scalar ``x`` in every lane of a vector of type ``vty``."""
    undef = ir.Constant(vty, ir.Undefined)
    x = builder.insert_element(undef, x, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(x, undef,
                                  ir.Constant(ir.VectorType(ir.IntType(32), vty.count),
                                              [0] * vty.count))


def _fma_rows(context, builder, dt, tile, wptr, wio, wso, xv, kb):
    """``tile[r, :] += wptr[wio + r * wso] * xv`` for the kb rows of a tile of ``len(xv)``
    vectors a row: each row's weight broadcast once, then a fused multiply-add a vector."""
    vty = xv[0].type
    vl, nv, align = vty.count, len(xv), dt.bitwidth // 8
    fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty] * 3),
                                         f"llvm.fma.v{vl}{_suffix(dt)}")
    for r in range(kb):
        woff = builder.add(wio, builder.mul(wso, ir.Constant(wso.type, r)))
        wv = _splat(builder, builder.load(cgutils.gep(builder, wptr, woff), align=align), vty)
        for v in range(nv):
            aptr = builder.bitcast(cgutils.gep(builder, tile, r * nv * vl + v * vl),
                                   vty.as_pointer())
            builder.store(builder.call(fma, [wv, xv[v], builder.load(aptr, align=align)]),
                          aptr, align=align)


@intrinsic
def outer_tile(typingctx, acc, af, ai, ao, aoi, bf, bi, bo, boi, rows, cols, lanes):
    """``acc[r, c*VL:(c+1)*VL] += af[ai + ao[aoi + r] : +VL] * bf[bi + bo[boi + c] : +VL]``
    for every row r and column c of the tile (VL: the ``lanes`` token's length): one step of
    a reduction whose two operands are both vectors, lane by lane (the weight gradient's sum
    over pixels, `convbench_kernels.cpu.direct_weight`).  Each row's vector of ``af`` and
    each column's of ``bf`` is loaded once, at its own offset (``ao``, ``bo``): ``rows *
    cols`` fused multiply-adds for ``rows + cols`` loads.

    Registers live at once: ``rows * cols`` accumulators, ``rows`` row vectors and one
    column vector.  The offsets are loop-invariant loads that LLVM hoists out of the
    caller's loop (the tile, on the stack, aliases nothing).
    """
    if not all(isinstance(t, types.BaseTuple) for t in (rows, cols, lanes)):
        return None
    dt = acc.dtype
    kb, nj, vl = len(rows), len(cols), len(lanes)

    def codegen(context, builder, sig, args):
        acca, afa, aio, aoa, aoio, bfa, bio, boa, boio = args[:9]
        vty = ir.VectorType(context.get_data_type(dt), vl)
        align = dt.bitwidth // 8
        def vector(base, offsets, oi, i):
            off = builder.load(cgutils.gep(builder, offsets, builder.add(
                oi, ir.Constant(oi.type, i))))
            return builder.load(builder.bitcast(cgutils.gep(builder, base, off),
                                                vty.as_pointer()), align=align)

        tile = _data(context, builder, sig, 0, acca)
        aptr = cgutils.gep(builder, _data(context, builder, sig, 1, afa), aio)
        bptr = cgutils.gep(builder, _data(context, builder, sig, 5, bfa), bio)
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vty, [vty, vty, vty]),
            f"llvm.fma.v{vl}{_suffix(dt)}")
        av = [vector(aptr, _data(context, builder, sig, 3, aoa), aoio, r) for r in range(kb)]
        for c in range(nj):
            bv = vector(bptr, _data(context, builder, sig, 7, boa), boio, c)
            for r in range(kb):
                tptr = builder.bitcast(cgutils.gep(builder, tile, r * nj * vl + c * vl),
                                       vty.as_pointer())
                builder.store(builder.call(fma, [av[r], bv, builder.load(tptr, align=align)]),
                              tptr, align=align)
        return context.get_dummy_value()

    return (types.void(acc, af, types.uint64, ao, types.int64, bf, types.uint64, bo,
                       types.int64, rows, cols, lanes), codegen)


@intrinsic
def lane_sum(typingctx, src, si, lanes):
    """The sum of the vector ``src.flat[si:si + VL]`` across its lanes (VL: the ``lanes``
    token's length), added in a tree (``llvm.vector.reduce.fadd`` allowed to reassociate:
    log2(VL) shuffles and adds) rather than in lane order (VL - 1 dependent scalar adds, each
    after an extract).  With ``src`` a `stack_tile` and ``si`` a constant the vector stays
    in its register."""
    if not isinstance(lanes, types.BaseTuple):
        return None
    dt = src.dtype
    vl = len(lanes)

    def codegen(context, builder, sig, args):
        srca, sio = args[:2]
        fty = context.get_data_type(dt)
        vty = ir.VectorType(fty, vl)
        v = builder.load(_vector_at(context, builder, sig.args[0], srca, sio, vty),
                         align=dt.bitwidth // 8)
        name = f"llvm.vector.reduce.fadd.v{vl}{_suffix(dt)}"
        reduce = cgutils.get_or_insert_function(builder.module,
                                                ir.FunctionType(fty, [fty, vty]), name)
        return builder.call(reduce, [ir.Constant(fty, 0.0), v], fastmath=("reassoc",))

    return dt(src, types.int64, lanes), codegen


@intrinsic
def store_lanes(typingctx, dst, di, src, si, lo, hi, lanes):
    """Store lanes ``lo <= l < hi`` of the vector ``src.flat[si:si + VL]`` at ``dst.flat[di + l]``
    (VL: the length of the ``lanes`` token), by a masked store: lanes outside the range touch
    no memory.

    With ``si`` a compile-time constant and ``src`` a `stack_tile`, LLVM keeps the vector in
    its register: the tile is never written to the stack.
    """
    if not isinstance(lanes, types.BaseTuple):
        return None
    dt = dst.dtype
    vl = len(lanes)

    def codegen(context, builder, sig, args):
        dsta, dio, srca, sio, lov, hiv, _ = args
        vty = ir.VectorType(context.get_data_type(dt), vl)
        i64 = ir.IntType(64)
        dptr = cgutils.gep(builder, _data(context, builder, sig, 0, dsta), dio)
        sptr = cgutils.gep(builder, _data(context, builder, sig, 2, srca), sio)
        v = builder.load(builder.bitcast(sptr, vty.as_pointer()), align=dt.bitwidth // 8)
        ity = ir.VectorType(i64, vl)
        lanes = ir.Constant(ity, [ir.Constant(i64, i) for i in range(vl)])
        mask = builder.and_(builder.icmp_signed(">=", lanes, _splat(builder, lov, ity)),
                            builder.icmp_signed("<", lanes, _splat(builder, hiv, ity)))
        name = f"llvm.masked.store.v{vl}{_suffix(dt)}.p0"
        fnty = ir.FunctionType(ir.VoidType(), [vty, vty.as_pointer(), ir.IntType(32), mask.type])
        store = cgutils.get_or_insert_function(builder.module, fnty, name)
        builder.call(store, [v, builder.bitcast(dptr, vty.as_pointer()),
                             ir.Constant(ir.IntType(32), dt.bitwidth // 8), mask])
        return context.get_dummy_value()

    return (types.void(dst, types.int64, src, types.int64, types.int64, types.int64, lanes),
            codegen)


@intrinsic
def cfma_tile(typingctx, accr, acci, xf, xr, xi, wf, wr, wi, rows, vecs, lanes):
    """One step of the complex micro-kernel: for every row r of the tile,
    ``(accr + i acci)[r, :] += (c + i d) * (xf[xr:xr + cols] + i xf[xi:xi + cols])`` with
    ``c = wf[wr + r]``, ``d = wf[wi + r]``: the ``2 len(vecs)`` input vectors are loaded
    once, each row's weight pair broadcast, four fused multiply-adds per vector.

    Registers live at once: ``2 rows vecs`` accumulators, ``2 vecs`` inputs and one
    broadcast (LLVM loads each of c and d just before its multiply-adds and folds the
    negation of d into them), which `convbench_kernels.cpu.fft_tiled.register_tile` fits in
    the register file.
    """
    if not all(isinstance(t, types.BaseTuple) for t in (rows, vecs, lanes)):
        return None
    dt = accr.dtype
    kb, nv, vl = len(rows), len(vecs), len(lanes)
    cols = nv * vl

    def codegen(context, builder, sig, args):
        ar, ai, xfa, xro, xio, wfa, wro, wio = args[:8]
        fty = context.get_data_type(dt)
        vty = ir.VectorType(fty, vl)
        align = dt.bitwidth // 8
        tr, ti, xptr, wptr = (_data(context, builder, sig, i, a)
                              for i, a in ((0, ar), (1, ai), (2, xfa), (5, wfa)))
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vty, [vty, vty, vty]),
            f"llvm.fma.v{vl}{_suffix(dt)}")

        def vectors(off):
            base = cgutils.gep(builder, xptr, off)
            return [builder.load(builder.bitcast(cgutils.gep(builder, base, v * vl),
                                                 vty.as_pointer()), align=align)
                    for v in range(nv)]

        xre, xim = vectors(xro), vectors(xio)
        undef = ir.Constant(vty, ir.Undefined)
        zeros = ir.Constant(ir.VectorType(ir.IntType(32), vl), [0] * vl)

        def splat(off):
            w = builder.load(cgutils.gep(builder, wptr, off), align=align)
            return builder.shuffle_vector(builder.insert_element(undef, w, ir.Constant(
                ir.IntType(32), 0)), undef, zeros)

        for r in range(kb):
            wr = splat(builder.add(wro, ir.Constant(wro.type, r)))
            wi = splat(builder.add(wio, ir.Constant(wio.type, r)))
            nwi = builder.fneg(wi)
            for v in range(nv):
                pr = builder.bitcast(cgutils.gep(builder, tr, r * cols + v * vl),
                                     vty.as_pointer())
                pi = builder.bitcast(cgutils.gep(builder, ti, r * cols + v * vl),
                                     vty.as_pointer())
                sr = builder.call(fma, [wr, xre[v], builder.load(pr, align=align)])
                si = builder.call(fma, [wr, xim[v], builder.load(pi, align=align)])
                builder.store(builder.call(fma, [nwi, xim[v], sr]), pr, align=align)
                builder.store(builder.call(fma, [wi, xre[v], si]), pi, align=align)
        return context.get_dummy_value()

    return (types.void(accr, acci, xf, types.int64, types.int64, wf, types.int64, types.int64,
                       rows, vecs, lanes), codegen)


@intrinsic
def transform_lanes(typingctx, dst, di, dstep, src, si, rstep, cstep, mat, side, taps, lanes):
    """One tile's 2-D transform in vectors: ``dst.flat[di + (e1*a + e2)*dstep : +VL] = (mat
    @ d @ mat.T)[e1, e2]`` with ``d[i, j] = src.flat[si + i*rstep + j*cstep : +VL]`` (s x s)
    and ``mat`` (a x s, C order; a = len(side), s = len(taps)), every element a vector of VL
    lanes (VL = len(lanes)).

    Written out for each row e1: its a sums ``sum_i mat[e1, i] d[i, j]`` stay in registers
    and feed the a outputs of that row directly, each a chain of fused multiply-adds stored
    once: no intermediate in memory and each coefficient loaded once a row (each sum of a
    pass computed alone, its results stored and reloaded by the next pass, loaded 864
    vectors a 6 x 6 tile instead of about 470).
    """
    if not all(isinstance(t, types.BaseTuple) for t in (side, taps, lanes)):
        return None
    dt = dst.dtype
    a, size, vl = len(side), len(taps), len(lanes)

    def codegen(context, builder, sig, args):
        dsta, dio, dso, srca, sio, rso, cso, mata = args[:8]
        fty = context.get_data_type(dt)
        vty = ir.VectorType(fty, vl)
        align = dt.bitwidth // 8
        mptr = context.make_array(sig.args[7])(context, builder, mata).data
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vty, [vty, vty, vty]),
            f"llvm.fma.v{vl}{_suffix(dt)}")
        undef = ir.Constant(vty, ir.Undefined)
        zeros = ir.Constant(ir.VectorType(ir.IntType(32), vl), [0] * vl)
        zero = ir.Constant(vty, [ir.Constant(fty, 0.0)] * vl)
        i64 = ir.IntType(64)

        def coef(k):
            c = builder.load(cgutils.gep(builder, mptr, ir.Constant(i64, k)), align=align)
            return builder.shuffle_vector(builder.insert_element(
                undef, c, ir.Constant(ir.IntType(32), 0)), undef, zeros)

        def at(arr, argty, off):
            return _vector_at(context, builder, argty, arr, off, vty)

        for e1 in range(a):
            row = [zero] * size
            for i in range(size):
                c = coef(e1 * size + i)
                base = builder.add(sio, builder.mul(rso, ir.Constant(rso.type, i)))
                for j in range(size):
                    off = builder.add(base, builder.mul(cso, ir.Constant(cso.type, j)))
                    v = builder.load(at(srca, sig.args[3], off), align=align)
                    row[j] = builder.call(fma, [c, v, row[j]])
            for e2 in range(a):
                total = zero
                for j in range(size):
                    total = builder.call(fma, [coef(e2 * size + j), row[j], total])
                off = builder.add(dio, builder.mul(dso, ir.Constant(dso.type, e1 * a + e2)))
                builder.store(total, at(dsta, sig.args[0], off), align=align)
        return context.get_dummy_value()

    return (types.void(dst, types.int64, types.int64, src, types.int64, types.int64,
                       types.int64, mat, side, taps, lanes), codegen)


@intrinsic
def transpose_lanes(typingctx, dst, di, dstep, src, si, sstep, lanes):
    """``dst.flat[di + q*dstep + l] = src.flat[si + l*sstep + q]`` for ``l, q < VL`` (VL =
    len(lanes), a power of two): a VL x VL block transposed in registers, VL loads, VL
    stores and VL log2(VL) two-vector shuffles (log2(VL) rounds of interleaving the low and
    high halves of row pairs), where element by element it takes VL^2 loads and stores."""
    if not isinstance(lanes, types.BaseTuple):
        return None
    dt = dst.dtype
    vl = len(lanes)

    def codegen(context, builder, sig, args):
        dsta, dio, dso, srca, sio, sso = args[:6]
        vty = ir.VectorType(context.get_data_type(dt), vl)
        align = dt.bitwidth // 8
        i32 = ir.IntType(32)

        def mask(values):
            return ir.Constant(ir.VectorType(i32, vl), [ir.Constant(i32, v) for v in values])

        half = vl // 2
        lo = mask([v for i in range(half) for v in (i, vl + i)])
        hi = mask([v for i in range(half, vl) for v in (i, vl + i)])
        rows = []
        for r in range(vl):
            off = builder.add(sio, builder.mul(sso, ir.Constant(sso.type, r)))
            rows.append(builder.load(_vector_at(context, builder, sig.args[3], srca, off, vty),
                                     align=align))
        for _ in range(vl.bit_length() - 1):
            pairs = [(rows[i], rows[i + half]) for i in range(half)]
            rows = [builder.shuffle_vector(a, b, m) for a, b in pairs for m in (lo, hi)]
        for q in range(vl):
            off = builder.add(dio, builder.mul(dso, ir.Constant(dso.type, q)))
            builder.store(rows[q], _vector_at(context, builder, sig.args[0], dsta, off, vty),
                          align=align)
        return context.get_dummy_value()

    return (types.void(dst, types.int64, types.int64, src, types.int64, types.int64, lanes),
            codegen)


def _vector_at(context, builder, arrty, arr, off, vty):
    """A pointer to the vector of type ``vty`` at ``arr.flat[off]`` (``arr`` of type
    ``arrty``)."""
    data = context.make_array(arrty)(context, builder, arr).data
    return builder.bitcast(cgutils.gep(builder, data, off), vty.as_pointer())


def _store(context, builder, value, ptr, stream, align):
    """Store the vector ``value`` at ``ptr``: non-temporal when the boolean ``stream`` is true
    (``ptr`` then aligned to the vector), else an ordinary store of ``align``-byte elements.
    Non-temporal stores are weakly ordered; the phase that reads them runs after the parallel
    region's join, whose locked instructions (x86) or barriers (ARM) order them."""
    with builder.if_else(stream) as (streamed, cached):
        with streamed:
            store = builder.store(value, ptr, align=value.type.count * align)
            store.set_metadata("nontemporal", builder.module.add_metadata(
                [ir.Constant(ir.IntType(32), 1)]))
        with cached:
            builder.store(value, ptr, align=align)


@intrinsic
def copy_lanes(typingctx, dst, di, src, si, stream, lanes):
    """``dst.flat[di:di + VL] = src.flat[si:si + VL]``: one vector (VL: the length of the
    ``lanes`` token), the store non-temporal with ``stream`` (see `combine_lanes`).  With
    ``src`` a `stack_tile` and ``si`` a compile-time constant, the vector stays in its
    register."""
    if not isinstance(lanes, types.BaseTuple):
        return None
    dt = dst.dtype
    vl = len(lanes)

    def codegen(context, builder, sig, args):
        dsta, dio, srca, sio, st = args[:5]
        vty = ir.VectorType(context.get_data_type(dt), vl)
        value = builder.load(_vector_at(context, builder, sig.args[2], srca, sio, vty),
                             align=dt.bitwidth // 8)
        _store(context, builder, value, _vector_at(context, builder, sig.args[0], dsta, dio, vty),
               st, dt.bitwidth // 8)
        return context.get_dummy_value()

    return types.void(dst, types.int64, src, types.int64, types.boolean, lanes), codegen


@intrinsic
def combine_lanes(typingctx, dst, di, a, ai, b, bi, sign, stream, lanes):
    """``dst.flat[di:di + VL] = a.flat[ai:ai + VL] + sign * b.flat[bi:bi + VL]``: one vector
    (VL: the length of the ``lanes`` token), one fused multiply-add.

    With ``stream`` true the store is non-temporal: it writes the line without first reading
    it into the cache (no read-for-ownership) and leaves the cache to the data that will be
    read again.  That store needs ``dst.flat[di]`` aligned to the vector, which the caller
    guarantees.
    """
    if not isinstance(lanes, types.BaseTuple):
        return None
    dt = dst.dtype
    vl = len(lanes)

    def codegen(context, builder, sig, args):
        dsta, dio, aa, aio, ba, bio, sg, st = args[:8]
        vty = ir.VectorType(context.get_data_type(dt), vl)
        align = dt.bitwidth // 8
        va = builder.load(_vector_at(context, builder, sig.args[2], aa, aio, vty), align=align)
        vb = builder.load(_vector_at(context, builder, sig.args[4], ba, bio, vty), align=align)
        sg = context.cast(builder, sg, sig.args[6], dt)
        undef = ir.Constant(vty, ir.Undefined)
        zeros = ir.Constant(ir.VectorType(ir.IntType(32), vl), [0] * vl)
        vs = builder.shuffle_vector(builder.insert_element(undef, sg, ir.Constant(
            ir.IntType(32), 0)), undef, zeros)
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vty, [vty, vty, vty]),
            f"llvm.fma.v{vl}{_suffix(dt)}")
        value = builder.call(fma, [vs, vb, va])
        _store(context, builder, value, _vector_at(context, builder, sig.args[0], dsta, dio, vty),
               st, align)
        return context.get_dummy_value()

    return (types.void(dst, types.int64, a, types.int64, b, types.int64, sign,
                       types.boolean, lanes), codegen)
