"""The CSA generate recurrence over hole positions, forward and backward: a small C kernel, and the
same arithmetic in torch ops where the kernel is unavailable.

    m_t = a_t m_{t-1} + (1 - a_t) k_t,  a_t = relu(Dad_t) / (relu(Dad_t) + e_t),
    Dad_t = <m_{t-1}, fh_t> / |m_{t-1}| (cosine) or <m_{t-1}, fh_t> (key-only),  m_{-1} = 0.

Inputs are compact: every hole of the batch is one row (V x C), samples one after another in
raster order, `offsets` (N + 1) marking where each sample's holes start. A step is ~2 dot products
of C numbers, so in torch ops its cost is dispatch (~10 ops of a few microseconds each, for each of
hundreds of sequential steps); the C loop runs the same arithmetic in well under a millisecond.

The kernel is compiled once per source version with the system C compiler into genfw's cache
(``$GENFW_CACHE_DIR``, else ``$XDG_CACHE_HOME/genfw``, else ``~/.cache/genfw``) and loaded with
ctypes (no torch headers, so it builds in about a second). Without a compiler, on CUDA tensors,
or with ``GENFW_CSA_KERNEL=0`` the torch loop runs instead; both give the same results to float
rounding (tested).
"""
from __future__ import annotations

import collections
import contextlib
import ctypes
import functools
import hashlib
import logging
import math
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch

from genfw import ConfigError

log = logging.getLogger("genfw.csa")
TINY = 1e-12  # floor for |m_{t-1}| (an all-zero patch has no direction)

_SOURCE = r"""
#include <math.h>
#include <stdint.h>

#define TINY 1e-12
#if defined(_OPENMP)
#include <omp.h>
#define PARALLEL_MIN 65536                    /* below this many values a loop stays on one thread */
#define PRAGMA_(x) _Pragma(#x)
#define PARALLEL_FOR(work) PRAGMA_(omp parallel for schedule(static) if ((work) >= 65536))
#else
#define PARALLEL_MIN 0
#define PARALLEL_FOR(work)
#endif
#define BLOCK 8   /* channels per pass of a row gather/scatter: 8 map rows a page apart share one
                     L1 set, and 8 is what an 8-way L1 holds without evicting */

#if defined(__AVX512F__) || defined(__AVX__)
#include <immintrin.h>
#endif

/* dst[0:n] = src[0:n] with streaming stores where the CPU has them: the output map is written once
   and not read again here, so a cold line should not be fetched before its write, nor should the
   output push the search's operands out of the cache. */
static void copy_out_f32(float *dst, const float *src, int64_t n) {
    int64_t i = 0;
#if defined(__AVX512F__)
    for (; i < n && ((uintptr_t)(dst + i) & 63); ++i) dst[i] = src[i];
    for (; i + 16 <= n; i += 16) _mm512_stream_ps(dst + i, _mm512_loadu_ps(src + i));
#elif defined(__AVX__)
    for (; i < n && ((uintptr_t)(dst + i) & 31); ++i) dst[i] = src[i];
    for (; i + 8 <= n; i += 8) _mm256_stream_ps(dst + i, _mm256_loadu_ps(src + i));
#endif
    for (; i < n; ++i) dst[i] = src[i];
}
static void copy_out_f64(double *dst, const double *src, int64_t n) {
    for (int64_t i = 0; i < n; ++i) dst[i] = src[i];  /* float64 is for tests and gradcheck */
}
static void copy_out_fence(void) {
#if defined(__AVX512F__) || defined(__AVX__)
    _mm_sfence();                              /* streaming stores are weakly ordered */
#endif
}

/* csa_prepare's bulk on a channel-major map (positions contiguous per channel): 16 channels x 16
   positions at a time, loaded as 16 row pieces, copied to out, transposed in registers (the usual
   unpack / shuffle / lane-shuffle ladder), and stored as 16 full cache lines, one per position row
   of fr or kr. Why: a scalar transpose writes half lines into rows 2 KB apart, and when the rows
   are not cached (the usual case: the layers before this one have been through the cache) every
   such write first waits for its line to be read. Streaming stores write whole aligned lines
   without reading them; the GEMM then reads fr and kr back in order, which is cheap. Measured
   right after a baseline call, batch 1: the pass took 1.5 ms before, 0.37 ms with this. Sets
   *cv, *pv to the channels and positions it covered. */
#if defined(__AVX512F__) || defined(__AVX__)
#define TILES 1
#if defined(__AVX512F__)
static inline void tile16_f32(float *out, float *fr, float *kr, const float *map, int64_t chs, const int64_t *slot,
                              int64_t l, int64_t c, int64_t i0, int64_t p0, int stream) {
    __m512 r[16], t[16], col[16];
    for (int k = 0; k < 16; ++k) {
        r[k] = _mm512_loadu_ps(map + (i0 + k) * chs + p0);
        if (stream) _mm512_stream_ps(out + (i0 + k) * chs + p0, r[k]);
        else _mm512_storeu_ps(out + (i0 + k) * chs + p0, r[k]);
    }
    for (int k = 0; k < 16; k += 2) {  /* per 128-bit lane: pairs of rows interleaved */
        t[k] = _mm512_unpacklo_ps(r[k], r[k + 1]);
        t[k + 1] = _mm512_unpackhi_ps(r[k], r[k + 1]);
    }
    for (int g = 0; g < 16; g += 4) {  /* r[g + k], lane L: rows g..g+3 at position 4L + k */
        r[g] = _mm512_shuffle_ps(t[g], t[g + 2], 0x44);
        r[g + 1] = _mm512_shuffle_ps(t[g], t[g + 2], 0xEE);
        r[g + 2] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0x44);
        r[g + 3] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0xEE);
    }
    for (int k = 0; k < 4; ++k) {      /* lane transpose of the four row groups */
        __m512 v0 = _mm512_shuffle_f32x4(r[k], r[4 + k], 0x44), v1 = _mm512_shuffle_f32x4(r[k], r[4 + k], 0xEE);
        __m512 v2 = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0x44), v3 = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0xEE);
        col[k] = _mm512_shuffle_f32x4(v0, v2, 0x88);
        col[4 + k] = _mm512_shuffle_f32x4(v0, v2, 0xDD);
        col[8 + k] = _mm512_shuffle_f32x4(v1, v3, 0x88);
        col[12 + k] = _mm512_shuffle_f32x4(v1, v3, 0xDD);
    }
    for (int j = 0; j < 16; ++j) {
        int64_t q = slot[p0 + j];
        float *d = (q < l ? fr + q * c : kr + (q - l) * c) + i0;
        if (stream) _mm512_stream_ps(d, col[j]);
        else _mm512_storeu_ps(d, col[j]);
    }
}
#else
/* 8 x 8 in registers: r[k] (row k) becomes column k */
static inline void tr8_f32(__m256 *r) {
    __m256 t[8], u[8];
    for (int k = 0; k < 8; k += 2) {           /* per 128-bit lane: pairs of rows interleaved */
        t[k] = _mm256_unpacklo_ps(r[k], r[k + 1]);
        t[k + 1] = _mm256_unpackhi_ps(r[k], r[k + 1]);
    }
    for (int g = 0; g < 8; g += 4) {           /* lane L of u[g + k]: rows g..g+3 at position 4L + k */
        u[g] = _mm256_shuffle_ps(t[g], t[g + 2], 0x44);
        u[g + 1] = _mm256_shuffle_ps(t[g], t[g + 2], 0xEE);
        u[g + 2] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0x44);
        u[g + 3] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0xEE);
    }
    for (int k = 0; k < 4; ++k) {              /* the two row groups' lanes joined */
        r[k] = _mm256_permute2f128_ps(u[k], u[4 + k], 0x20);
        r[4 + k] = _mm256_permute2f128_ps(u[k], u[4 + k], 0x31);
    }
}
/* The same pass with 256-bit registers (AVX2 CPUs): a 16 x 16 tile is four 8 x 8 transposes, so
   every store to out, fr or kr is still one whole 64-byte line (two 32-byte halves in a row). On a
   2-core AMD EPYC (AVX2), right after a baseline call, batch 1: 1.15 ms scalar, 0.62 ms with this. */
static inline void tile16_f32(float *out, float *fr, float *kr, const float *map, int64_t chs, const int64_t *slot,
                              int64_t l, int64_t c, int64_t i0, int64_t p0, int stream) {
    __m256 q[4][8];                    /* [channels 0-7 / 8-15][positions 0-7 / 8-15] */
    for (int k = 0; k < 16; ++k) {
        const float *src = map + (i0 + k) * chs + p0;
        float *o = out + (i0 + k) * chs + p0;
        __m256 lo = _mm256_loadu_ps(src), hi = _mm256_loadu_ps(src + 8);
        if (stream) { _mm256_stream_ps(o, lo); _mm256_stream_ps(o + 8, hi); }
        else { _mm256_storeu_ps(o, lo); _mm256_storeu_ps(o + 8, hi); }
        q[(k >> 3) * 2][k & 7] = lo;
        q[(k >> 3) * 2 + 1][k & 7] = hi;
    }
    for (int b = 0; b < 4; ++b) tr8_f32(q[b]);
    for (int j = 0; j < 16; ++j) {     /* position p0 + j: channels i0..i0+15 */
        int64_t s = slot[p0 + j];
        float *d = (s < l ? fr + s * c : kr + (s - l) * c) + i0;
        __m256 lo = q[j >> 3][j & 7], hi = q[2 + (j >> 3)][j & 7];
        if (stream) { _mm256_stream_ps(d, lo); _mm256_stream_ps(d + 8, hi); }
        else { _mm256_storeu_ps(d, lo); _mm256_storeu_ps(d + 8, hi); }
    }
}
#endif
#endif
static void tiles_f32(float *out, float *fr, float *kr, const float *map, int64_t chs, const int64_t *slot,
                      int64_t l, int64_t hw, int64_t c, int64_t *cv, int64_t *pv) {
#if defined(TILES)
    int64_t c16 = c - c % 16, p16 = hw - hw % 16;
    /* streaming stores where every line is whole and aligned: no read of the cold line first */
    int stream = !(((uintptr_t)fr | (uintptr_t)kr | (uintptr_t)out) & 63) && c % 16 == 0 && chs % 16 == 0;
    PARALLEL_FOR(c16 * p16)                    /* threads take channel blocks: no line is shared */
    for (int64_t i0 = 0; i0 < c16; i0 += 16)
        for (int64_t p0 = 0; p0 < p16; p0 += 16) tile16_f32(out, fr, kr, map, chs, slot, l, c, i0, p0, stream);
    *cv = c16;
    *pv = p16;
#else
    (void)out; (void)fr; (void)kr; (void)map; (void)chs; (void)slot; (void)l; (void)hw; (void)c;
    *cv = *pv = 0;
#endif
}
/* the first j with si[j] * rn[j] == top, kk when there is none (a NaN): the arg-max's second pass,
   16 products and one compare a step where AVX-512 is there */
static int64_t first_at_f32(const float *si, const float *rn, int64_t kk, float top) {
    int64_t j = 0;
#if defined(__AVX512F__)
    __m512 tv = _mm512_set1_ps(top);
    for (; j + 16 <= kk; j += 16) {
        __m512 q = _mm512_mul_ps(_mm512_loadu_ps(si + j), _mm512_loadu_ps(rn + j));
        __mmask16 hit = _mm512_cmp_ps_mask(q, tv, _CMP_EQ_OQ);
        if (hit) return j + __builtin_ctz(hit);
    }
#endif
    for (; j < kk; ++j) if (si[j] * rn[j] == top) return j;
    return kk;
}
static int64_t first_at_f64(const double *si, const double *rn, int64_t kk, double top) {
    for (int64_t j = 0; j < kk; ++j) if (si[j] * rn[j] == top) return j;
    return kk;
}
/* For each of `rows` rows of c values: dst = the row rounded to bf16 (to nearest, ties to even, as
   torch rounds), the search product's operand, and nrm = the row's fp32 norm, in one read of the
   row. A NaN may come out as an infinity; its norm sends the sample to the fp32 product anyway. */
void csa_rows_bf16(uint16_t *dst, const float *src, int64_t rows, int64_t c, float *nrm) {
    PARALLEL_FOR(rows * c)
    for (int64_t r = 0; r < rows; ++r) {
        const float *s = src + r * c;
        uint16_t *d = dst + r * c;
        float acc = 0;
        int64_t i = 0;
#if defined(__AVX512F__)
        const __m512i half = _mm512_set1_epi32(0x7FFF), one = _mm512_set1_epi32(1);
        __m512 sq = _mm512_setzero_ps();
        for (; i + 16 <= c; i += 16) {
            __m512 v = _mm512_loadu_ps(s + i);
            sq = _mm512_fmadd_ps(v, v, sq);
            __m512i u = _mm512_castps_si512(v);
            __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), one);
            u = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, half), odd), 16);
            _mm256_storeu_si256((__m256i *)(d + i), _mm512_cvtepi32_epi16(u));
        }
        acc = _mm512_reduce_add_ps(sq);
#endif
        for (; i < c; ++i) {
            union { float f; uint32_t u; } b = {s[i]};
            d[i] = (uint16_t)((b.u + 0x7FFFu + ((b.u >> 16) & 1u)) >> 16);
            acc += s[i] * s[i];
        }
        nrm[r] = sqrtf(acc);
    }
}
static float dot_plain_f32(const float *x, const float *y, int64_t n) {
    float s = 0;
    int64_t i = 0;
#if defined(__AVX512F__)
    if (n >= 64) {                             /* four sums: one is an FMA latency per 16 terms */
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (; i + 64 <= n; i += 64) {
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), a0);
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(y + i + 16), a1);
            a2 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 32), _mm512_loadu_ps(y + i + 32), a2);
            a3 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 48), _mm512_loadu_ps(y + i + 48), a3);
        }
        s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    }
#endif
    for (; i < n; ++i) s += x[i] * y[i];
    return s;
}
/* The search's arg-max from a bf16 product (AMX runs it ~5x faster than the fp32 one), made exact
   by re-checking in fp32. sb (l x kk): bf16 <f~_i, k~_j>, f~ and k~ the bf16-rounded rows, fp32 sums.
   With u = 2^-8 (bf16's unit roundoff) every such score is within eps |f_i| |k_j| of <f_i, k_j>
   (two input roundings, the fp32 sum, the output rounding; Cauchy-Schwarz), so after the division
   by |k_j| within eps |f_i| of the true score, for every j alike. The fp32 arg-max J therefore has
   an approximate score within 2 (eps + fp32's own error) |f_i| of the approximate maximum: every
   key in that window is re-scored as the fp32 path scores it (<f_i, k_j> * rn_j, the first of
   equals wins), and J is among them. Returns 0, or 1 when the caller must run the fp32 product
   instead: a non-finite or tiny value (bf16 flushes what fp32 still holds), or more candidates
   than budget (then re-scoring would cost more than the product). fnrm: |f_i|; rn: |key_j| on
   entry, 1 / |key_j| on return (both from csa_rows_bf16). */
/* One hole of csa_refine_f32: si its bf16 scores, fi its fp32 row, fn = |fi|; sf: kk scratch.
   spent counts re-scored keys against budget. 0: *best is the arg-max; 1: give up. */
static int refine_row(int64_t c, int64_t kk, const uint16_t *si, const float *fi, float fn, const float *kr,
                      const float *rn, float eps, int64_t *spent, int64_t budget, float *sf, int64_t *best) {
    if (!(fn > 1e-15f) || !isfinite(fn)) return 1;
    float top = -INFINITY;
    int64_t j = 0;
#if defined(__AVX512F__)
    __m512 tv = _mm512_set1_ps(-INFINITY);
    for (; j + 16 <= kk; j += 16) {        /* bf16 -> fp32 is a 16-bit shift */
        __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(si + j)));
        __m512 q = _mm512_mul_ps(_mm512_castsi512_ps(_mm512_slli_epi32(w, 16)), _mm512_loadu_ps(rn + j));
        _mm512_storeu_ps(sf + j, q);
        tv = _mm512_max_ps(tv, q);
    }
    top = _mm512_reduce_max_ps(tv);
#endif
    for (; j < kk; ++j) {
        union { uint32_t u; float f; } b = {(uint32_t)si[j] << 16};
        float q = b.f * rn[j];
        sf[j] = q;
        top = q > top ? q : top;
    }
    if (!isfinite(top)) return 1;          /* also a NaN row max (max_ps passes NaNs on) */
    float floor_ = top - 2.02f * eps * fn - 1e-18f;
    float bestv = -INFINITY;
    int64_t bj = -1;
    j = 0;
#if defined(__AVX512F__)
    __m512 fv = _mm512_set1_ps(floor_);
    for (; j + 16 <= kk; j += 16) {        /* 16 compares a step; NaNs compare true: re-checked */
        __mmask16 hit = _mm512_cmp_ps_mask(_mm512_loadu_ps(sf + j), fv, _CMP_NLT_UQ);
        while (hit) {
            int64_t jj = j + __builtin_ctz(hit);
            hit &= hit - 1;
            if (sf[jj] != sf[jj] || ++*spent > budget) return 1;
            float q = dot_plain_f32(fi, kr + jj * c, c) * rn[jj];
            if (q > bestv) { bestv = q; bj = jj; }
        }
    }
#endif
    for (; j < kk; ++j) {
        if (sf[j] < floor_) continue;
        if (sf[j] != sf[j]) return 1;      /* a NaN: the fp32 path's rule decides */
        if (++*spent > budget) return 1;
        float q = dot_plain_f32(fi, kr + j * c, c) * rn[j];
        if (q > bestv) { bestv = q; bj = j; }
    }
    if (bj < 0) return 1;
    *best = bj;
    return 0;
}
int csa_refine_f32(int64_t c, int64_t l, int64_t kk, const uint16_t *sb, const float *fr, const float *kr,
                   const float *fnrm, float *rn, int64_t *best, int64_t budget, float *sf, int64_t nt) {
    for (int64_t j = 0; j < kk; ++j) {         /* rn holds |key_j| on entry */
        float q = rn[j];
        if (!(q > 1e-15f) || !isfinite(q)) return 1;
        rn[j] = 1 / q;
    }
    const float eps = 3.05f / 256 + 2.05f * (float)(c + 2) / 16777216.0f;
    int fail = 0;
#if defined(_OPENMP)
    #pragma omp parallel num_threads(nt > 0 ? nt : 1) if (l * kk >= PARALLEL_MIN)  /* sf: nt x kk */
#endif
    {
        int64_t spent = 0, share = budget, tid = 0;   /* each thread its share of the budget */
#if defined(_OPENMP)
        share = budget / omp_get_num_threads();
        tid = omp_get_thread_num();
        #pragma omp for schedule(static)
#endif
        for (int64_t i = 0; i < l; ++i) {
            if (fail) continue;                /* a benign race: only ever set to 1 */
            if (refine_row(c, kk, sb + i * kk, fr + i * c, fnrm[i], kr, rn, eps, &spent, share, sf + tid * kk, best + i))
                fail = 1;
        }
    }
    return fail;
}
static void tiles_f64(double *out, double *fr, double *kr, const double *map, int64_t chs, const int64_t *slot,
                      int64_t l, int64_t hw, int64_t c, int64_t *cv, int64_t *pv) {
    (void)out; (void)fr; (void)kr; (void)map; (void)chs; (void)slot; (void)l; (void)hw; (void)c;
    *cv = *pv = 0;                             /* float64 is for tests and gradcheck: scalar */
}

/* Holes come sample by sample in raster order; off[s]..off[s+1] are sample s's. A map is given
   by its data and its strides (sample, channel, position), so contiguous and channels_last work. */
#define DEFINE(T, SX)                                                                              \
static T dot_##SX(const T *x, const T *y, int64_t n) {                                             \
    T s = 0;                                                                                       \
    _Pragma("omp simd reduction(+:s)")                                                             \
    for (int64_t i = 0; i < n; ++i) s += x[i] * y[i];                                              \
    return s;                                                                                      \
}                                                                                                  \
/* rows[t] = map[nid[t], :, pos[t]], channel blocks outermost so each block's map rows are read  \
   together (a contiguous map has a page between one channel and the next) */                    \
static void gather_##SX(T *rows, const T *map, const int64_t *st, const int64_t *nid,             \
                        const int64_t *pos, int64_t v, int64_t c) {                                \
    if (st[1] == 1) {                          /* channels_last: a position's channels are a row */ \
        for (int64_t t = 0; t < v; ++t) {                                                          \
            const T *src = map + (nid ? nid[t] * st[0] : 0) + (pos ? pos[t] : t) * st[2];          \
            _Pragma("omp simd")                                                                    \
            for (int64_t i = 0; i < c; ++i) rows[t * c + i] = src[i];                              \
        }                                                                                          \
        return;                                                                                    \
    }                                                                                              \
    for (int64_t i0 = 0; i0 < c; i0 += BLOCK) {                                                    \
        int64_t i1 = i0 + BLOCK < c ? i0 + BLOCK : c;                                              \
        for (int64_t t = 0; t < v; ++t) {                                                          \
            const T *src = map + (nid ? nid[t] * st[0] : 0) + (pos ? pos[t] : t) * st[2];                                  \
            for (int64_t i = i0; i < i1; ++i) rows[t * c + i] = src[i * st[1]];                    \
        }                                                                                          \
    }                                                                                              \
}                                                                                                  \
/* map[nid[t], :, pos[t]] = rows[t] (add: +=), in row order, so repeated positions accumulate */   \
static void scatter_##SX(T *map, const int64_t *st, const int64_t *nid, const int64_t *pos,       \
                         const T *rows, int64_t v, int64_t c, int add) {                           \
    PARALLEL_FOR(v * c)                        /* by channel blocks: repeated positions stay ordered */ \
    for (int64_t i0 = 0; i0 < c; i0 += BLOCK) {                                                    \
        int64_t i1 = i0 + BLOCK < c ? i0 + BLOCK : c;                                              \
        for (int64_t t = 0; t < v; ++t) {                                                          \
            T *dst = map + (nid ? nid[t] * st[0] : 0) + pos[t] * st[2];                                        \
            if (add) for (int64_t i = i0; i < i1; ++i) dst[i * st[1]] += rows[t * c + i];          \
            else for (int64_t i = i0; i < i1; ++i) dst[i * st[1]] = rows[t * c + i];               \
        }                                                                                          \
    }                                                                                              \
}                                                                                                  \
/* The recurrence over one sample's holes (rows t = 0..v-1 of fh, m, sc; of k, or rows kidx[t] of k \
   when kidx is given); fh holds f on entry and is normalised in place. */                          \
static void recur_##SX(T *fh, const T *k, const int64_t *kidx, T *m, T *sc, int64_t v, int64_t c,  \
                       int cosine, T eps) {                                                        \
    for (int64_t t = 0; t < v; ++t) {                                                              \
        T *ft = fh + t * c, *mt = m + t * c, *st = sc + 7 * t;                                     \
        const T *kt = k + (kidx ? kidx[t] : t) * c;                                                \
        T fn = sqrt(dot_##SX(ft, ft, c)), kn = sqrt(dot_##SX(kt, kt, c));                          \
        T fc = fn < (T)TINY ? (T)TINY : fn, kc = kn < (T)TINY ? (T)TINY : kn;                      \
        T qk = dot_##SX(ft, kt, c);            /* <f, k> */                                        \
        _Pragma("omp simd")                                                                        \
        for (int64_t i = 0; i < c; ++i) ft[i] /= fc;                                               \
        T dmax = (cosine ? qk / fc : qk) / kc;                                                     \
        T e = (dmax > 0 ? dmax : 0) + eps, p = 0, nr = (T)TINY, at = 0;                            \
        if (t == 0) {                          /* m_{-1} = 0: Dad = 0, a = 0, m = k */             \
            for (int64_t i = 0; i < c; ++i) mt[i] = kt[i];                                         \
        } else {                                                                                   \
            const T *prev = mt - c;                                                                \
            p = dot_##SX(prev, ft, c);                                                             \
            nr = 1;                                                                                \
            if (cosine) {                                                                          \
                nr = sqrt(dot_##SX(prev, prev, c));                                                \
                if (nr < (T)TINY) nr = (T)TINY;                                                    \
                p /= nr;                                                                           \
            }                                                                                      \
            T d = p > 0 ? p : 0;                                                                   \
            at = d / (d + e);                                                                      \
            _Pragma("omp simd")                                                                    \
            for (int64_t i = 0; i < c; ++i) mt[i] = kt[i] + at * (prev[i] - kt[i]);                \
        }                                                                                          \
        st[0] = fn; st[1] = kn; st[2] = dmax; st[3] = e; st[4] = p; st[5] = nr; st[6] = at;        \
    }                                                                                              \
}                                                                                                  \
/* One pass over a sample's map (chs, ps: its channel and position strides; out has the same): out = \
   the map, fr[t] = map[:, order[t]] for the l holes and kr[j] = map[:, order[l + j]] for the known   \
   positions: position-major rows, what the recurrence walks and the search GEMM reads (kr          \
   transposed). The map is read once: a cold map costs more than all the arithmetic here. slot: hw  \
   scratch. */                                                                                     \
void csa_prepare_##SX(T *out, T *fr, T *kr, const T *map, int64_t chs, int64_t ps,                \
                      const int64_t *order, int64_t l, int64_t hw, int64_t c, int64_t *slot) {     \
    for (int64_t i = 0; i < hw; ++i) slot[order[i]] = i;                                           \
    if (chs == 1) {                            /* channels_last: a position's channels are a row */ \
        for (int64_t p = 0; p < hw; ++p) {                                                         \
            const T *src = map + p * ps;                                                           \
            T *d = slot[p] < l ? fr + slot[p] * c : kr + (slot[p] - l) * c;                        \
            copy_out_##SX(out + p * ps, src, c);                                                   \
            _Pragma("omp simd")                                                                    \
            for (int64_t i = 0; i < c; ++i) d[i] = src[i];                                         \
        }                                                                                          \
        copy_out_fence();                                                                          \
        return;                                                                                    \
    }                                                                                              \
    int64_t cv = 0, pv = 0;                    /* what the vector tiles covered (none: scalar) */   \
    if (ps == 1) tiles_##SX(out, fr, kr, map, chs, slot, l, hw, c, &cv, &pv);                      \
    for (int part = 0; part < 2; ++part) {     /* channels [cv, c) everywhere, [0, cv) past pv */  \
        int64_t cb = part ? 0 : cv, ce = part ? cv : c, pb = part ? pv : 0;                        \
        for (int64_t i0 = cb; i0 < ce; i0 += BLOCK) {  /* BLOCK rows copied, then gathered from L1 */ \
            int64_t i1 = i0 + BLOCK < ce ? i0 + BLOCK : ce;                                        \
            for (int64_t i = i0; i < i1; ++i) {                                                    \
                const T *src = map + i * chs;                                                      \
                T *o = out + i * chs;                                                              \
                if (ps == 1) copy_out_##SX(o + pb, src + pb, hw - pb);                             \
                else for (int64_t p = pb; p < hw; ++p) o[p * ps] = src[p * ps];                    \
            }                                                                                      \
            for (int64_t p = pb; p < hw; ++p) {                                                    \
                T *d = slot[p] < l ? fr + slot[p] * c : kr + (slot[p] - l) * c;                    \
                const T *src = map + p * ps;                                                       \
                for (int64_t i = i0; i < i1; ++i) d[i] = src[i * chs];                             \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
    copy_out_fence();                                                                              \
}                                                                                                  \
/* One sample after its search GEMM: scores (l x kk, <f_i, key_j>), kr (kk x c, one known position  \
   per row) and fh (l x c, the raw hole features, one hole per row, normalised here in place). For  \
   every hole, in raster order: the best key j = argmax <f_i, key_j> / |key_j| (the first of equals, \
   like torch), Dmax, the recurrence, and m_i written into out at hole[i]. Saved for backward: fh   \
   (unit f), k (the chosen key rows, copied only when k is given; otherwise the recurrence reads kr  \
   in place), m (l x c each), per hole sc = |f| raw, |k| raw, Dmax, e, Dad, |m_{t-1}|, a, and best = \
   the map position of the chosen key; pid = hole, for the caller. rn: kk scratch. */               \
void csa_search_fill_##SX(int64_t c, int64_t l, int64_t kk, const T *scores, const T *kr,           \
        const int64_t *known, T *fh, const int64_t *hole, int cosine, T eps, T *out, int64_t ocs,    \
        int64_t ops, T *k, T *m, T *sc, int64_t *best, int64_t *pid, T *rn) {                       \
    for (int64_t j = 0; scores && j < kk; ++j) {  /* 1 / |key_j|: the division moves onto the scores */ \
        T q = sqrt(dot_##SX(kr + j * c, kr + j * c, c));                                           \
        rn[j] = 1 / (q < (T)TINY ? (T)TINY : q);                                                   \
    }                                                                                              \
    for (int64_t i = 0; scores && i < l; ++i) {  /* no scores: best holds the arg-max already */ \
        const T *si = scores + i * kk;                                                             \
        T top = -INFINITY;                                                                         \
        _Pragma("omp simd reduction(max:top)")                                                     \
        for (int64_t j = 0; j < kk; ++j) { T q = si[j] * rn[j]; top = q > top ? q : top; }          \
        int64_t bj = first_at_##SX(si, rn, kk, top);                                               \
        best[i] = bj < kk ? bj : 0;            /* a NaN score: torch would pick it; we keep 0 */    \
    }                                                                                              \
    if (k) {                                                                                       \
        const int64_t kst[3] = {0, 1, c};                                                          \
        gather_##SX(k, kr, kst, 0, best, l, c);  /* row copies */                                  \
        recur_##SX(fh, k, 0, m, sc, l, c, cosine, eps);                                            \
    } else {                                                                                       \
        recur_##SX(fh, kr, best, m, sc, l, c, cosine, eps);                                        \
    }                                                                                              \
    for (int64_t i = 0; i < l; ++i) { best[i] = known[best[i]]; pid[i] = hole[i]; }               \
    const int64_t ost[3] = {0, ocs, ops};                                                          \
    scatter_##SX(out, ost, 0, hole, m, l, c, 0);                                                   \
}                                                                                                  \
/* gx holds grad_out on entry; on return holes hold the gradient w.r.t. their f, and each best  \
   known position has its g_k added. gr, gk: V x C scratch; w: c scratch. */                      \
void csa_fill_backward_##SX(int64_t nseg, const int64_t *off, int64_t c, T *gx, const int64_t *gs,   \
        const int64_t *nid, const int64_t *pid, const int64_t *best, int cosine, const T *fh,         \
        const T *k, const T *m, const T *sc, T *gr, T *gkr, T *g) {                                \
    int64_t v = off[nseg];                                                                         \
    gather_##SX(gr, gx, gs, nid, pid, v, c);      /* grad_out at the holes, overwritten by g_f */  \
    for (int64_t s = 0; s < nseg; ++s) {                                                           \
        for (int64_t i = 0; i < c; ++i) g[i] = 0;                                                  \
        for (int64_t t = off[s + 1] - 1; t >= off[s]; --t) {                                       \
            const T *ft = fh + t * c, *kt = k + t * c, *st = sc + 7 * t;                           \
            T *gf = gr + t * c, *gk = gkr + t * c;                                                 \
            T fn = st[0], kn = st[1], dmax = st[2], e = st[3], dt = st[4], nr = st[5], at = st[6];  \
            T fc = fn < (T)TINY ? (T)TINY : fn, kc = kn < (T)TINY ? (T)TINY : kn;                  \
            int first = t == off[s];                                                               \
            const T *prev = m + (t - 1) * c;                                                       \
            for (int64_t i = 0; i < c; ++i) g[i] += gf[i];   /* dL/dm_t */                         \
            T d = dt > 0 ? dt : 0, sum = d + e;                                                    \
            T ga = 0;                                 /* dL/da_t, with dm_t/da_t = m_{t-1} - k_t */ \
            if (!first) {                                                                          \
                _Pragma("omp simd reduction(+:ga)")                                                \
                for (int64_t i = 0; i < c; ++i) ga += g[i] * (prev[i] - kt[i]);                    \
            }                                                                                      \
            T g_e = -ga * d / (sum * sum);                                                         \
            T coef = (dt > 0 && !first) ? ga * e / (sum * sum) : 0;   /* dL/dDad */                \
            _Pragma("omp simd")                                                                    \
            for (int64_t i = 0; i < c; ++i) { gk[i] = (1 - at) * g[i]; gf[i] = 0; }                \
            if (coef != 0) {                        /* Dad = <m_{t-1}, fh> (/ |m_{t-1}|) */        \
                if (cosine) {                                                                      \
                    _Pragma("omp simd")                                                            \
                    for (int64_t i = 0; i < c; ++i) {                                              \
                        T up = prev[i] / nr;                                                       \
                        gf[i] = coef * up;                                                         \
                        g[i] = g[i] * at + coef * (ft[i] - dt * up) / nr;                          \
                    }                                                                              \
                } else {                                                                           \
                    _Pragma("omp simd")                                                            \
                    for (int64_t i = 0; i < c; ++i) { gf[i] = coef * prev[i]; g[i] = g[i] * at + coef * ft[i]; }\
                }                                                                                  \
            } else {                                                                               \
                for (int64_t i = 0; i < c; ++i) g[i] *= at;                                        \
            }                                                                                      \
            T gd = dmax > 0 ? g_e : 0;                /* e = relu(Dmax) + eps */                   \
            /* Dmax = <q, k> / |k| with q = fh (cosine) or f = |f| fh (key-only) */                \
            T qscale = cosine ? 1 : fc;                                                            \
            T kd = kn < (T)TINY ? 0 : dmax / kc;      /* the clamp freezes |k| below TINY */         \
            _Pragma("omp simd")                                                                    \
            for (int64_t i = 0; i < c; ++i) gk[i] += gd * (qscale * ft[i] - kd * kt[i]) / kc;      \
            if (cosine) {                                                                          \
                _Pragma("omp simd")                                                                \
                for (int64_t i = 0; i < c; ++i) gf[i] += gd * kt[i] / kc;                          \
            }                                                                                      \
            /* f -> fh = f / |f|: project out fh, divide by |f| (clamped: no projection) */        \
            T proj = fn < (T)TINY ? 0 : dot_##SX(gf, ft, c);                                       \
            T direct = cosine ? 0 : gd / kc;          /* key-only: Dmax's own f term */            \
            _Pragma("omp simd")                                                                    \
            for (int64_t i = 0; i < c; ++i) gf[i] = (gf[i] - proj * ft[i]) / fc + direct * kt[i];  \
        }                                                                                          \
    }                                                                                              \
    scatter_##SX(gx, gs, nid, pid, gr, v, c, 0);                                                   \
    scatter_##SX(gx, gs, nid, best, gkr, v, c, 1);                                                 \
}

/* Per sample (mask: n x hw, 1 = hole where > 0.5): order[s] = its hole positions, then its known
   ones, both in raster order (a stable partition, what a stable sort of ~hole gives), and
   counts[s] = its number of holes. One call instead of a handful of torch ops, whose dispatch
   costs more than this loop on a cold cache. */
void csa_order(const float *mask, int64_t n, int64_t hw, int64_t *order, int64_t *counts) {
    for (int64_t s = 0; s < n; ++s) {
        const float *ms = mask + s * hw;
        int64_t *os = order + s * hw, h = 0, k = 0;
        for (int64_t p = 0; p < hw; ++p) h += ms[p] > 0.5f;
        for (int64_t p = 0; p < hw; ++p) {
            if (ms[p] > 0.5f) os[k++] = p;
            else os[h + (p - k)] = p;
        }
        counts[s] = h;
    }
}

DEFINE(float, f32)
DEFINE(double, f64)
"""

_FLAGS = ["-O3", "-std=c99", "-fPIC", "-shared", "-fopenmp-simd"]
# the map pass, the row casts, the re-check and the scatter split over torch's intra-op threads: the
# same OpenMP runtime torch uses (one libgomp per process), so torch.set_num_threads governs both
_OPENMP = "-fopenmp"
_NATIVE = "-march=native"  # the loops are short dot products: AVX2/AVX-512 where the CPU has them
_lock = threading.Lock()
_lib: ctypes.CDLL | None | bool = None  # None: not tried yet; False: unavailable


def _cache_dir() -> Path:
    if os.environ.get("GENFW_CACHE_DIR"):
        return Path(os.environ["GENFW_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "genfw"


def _cpu_id() -> str:
    """What a -march=native build depends on: a cache shared by different CPUs keeps one build each."""
    ident = platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features", "model name")):
                ident += line
            if line.strip() == "":
                break  # the first CPU is enough
    return ident


def _build(cc: str, flags: list[str], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        src = Path(tmp) / "csa_recurrence.c"
        src.write_text(_SOURCE)
        built = Path(tmp) / target.name
        subprocess.run([cc, *flags, str(src), "-o", str(built), "-lm"], check=True, capture_output=True, timeout=120)
        os.replace(built, target)  # atomic: a concurrent process sees all or nothing


def _compile() -> ctypes.CDLL | bool:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        log.info("csa: no C compiler found; the CSA recurrence runs as torch ops (slower, same results)")
        return False
    lib = None
    # native first; a compiler that does not know -march=native (some non-x86 gcc) gets the plain build
    for flags in ([*_FLAGS, _NATIVE, _OPENMP], [*_FLAGS, _NATIVE], _FLAGS):
        key = _SOURCE + " ".join(flags) + (_cpu_id() if _NATIVE in flags else "")
        target = _cache_dir() / "kernels" / f"csa_recurrence_{hashlib.sha256(key.encode()).hexdigest()[:16]}.so"
        try:
            if not target.is_file():
                _build(cc, flags, target)
            lib = ctypes.CDLL(str(target))
            break
        except (OSError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            error = f"{exc} {detail.decode(errors='replace')[:200]}"
    if lib is None:
        log.warning("csa: could not build the CSA recurrence kernel (%s); using torch ops (slower, same results)", error)
        return False
    ptr, i64 = ctypes.c_void_p, ctypes.c_int64
    lib.csa_order.argtypes = [ptr, i64, i64, ptr, ptr]
    lib.csa_refine_f32.argtypes = [i64, i64, i64, ptr, ptr, ptr, ptr, ptr, ptr, i64, ptr, i64]
    lib.csa_rows_bf16.argtypes = [ptr, ptr, i64, i64, ptr]
    for suffix, real in (("f32", ctypes.c_float), ("f64", ctypes.c_double)):
        getattr(lib, f"csa_prepare_{suffix}").argtypes = [ptr, ptr, ptr, ptr, i64, i64, ptr, i64, i64, i64, ptr]
        getattr(lib, f"csa_search_fill_{suffix}").argtypes = [
            i64, i64, i64, ptr, ptr, ptr, ptr, ptr, ctypes.c_int, real, ptr, i64, i64, ptr, ptr, ptr, ptr, ptr, ptr]
        getattr(lib, f"csa_fill_backward_{suffix}").argtypes = [
            i64, ptr, i64, ptr, ptr, ptr, ptr, ptr, ctypes.c_int, ptr, ptr, ptr, ptr, ptr, ptr, ptr]
    return lib


def kernel() -> ctypes.CDLL | None:
    """The compiled kernel, or None where it cannot be built or GENFW_CSA_KERNEL=0 turns it off."""
    global _lib
    if os.environ.get("GENFW_CSA_KERNEL", "1") == "0":
        return None
    if _lib is None:
        with _lock:
            if _lib is None:
                _lib = _compile()
    return _lib or None


@contextlib.contextmanager
def intra_op_threads(n: int):
    """torch's intra-op thread count set to n (0: unchanged) for the block, then restored."""
    before = torch.get_num_threads()
    if n and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n and n != before:
            torch.set_num_threads(before)


def usable(x: torch.Tensor) -> ctypes.CDLL | None:
    """The kernel, if it can run on x (a CPU float32/float64 tensor)."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return None
    return kernel()


def hole_order(lib: ctypes.CDLL, mask: torch.Tensor, scratch: bool = False) -> tuple[torch.Tensor, list[int]]:
    """mask (N x 1 x H x W, 1 = hole where > 0.5) -> order (N x HW: each sample's holes, then its
    known positions, both in raster order) and each sample's hole count, in one kernel call.
    scratch: order is this thread's scratch (the layer's own call, which reads it at once)."""
    n = mask.shape[0]
    m = mask.reshape(n, -1)
    if m.dtype != torch.float32 or not m.is_contiguous() or m.device.type != "cpu":
        m = m.to("cpu", torch.float32).contiguous()
    if scratch:
        order, counts = _scratch.view("order", tuple(m.shape), torch.int64), _scratch.view("counts", (n,), torch.int64)
    else:
        order, counts = torch.empty(m.shape, dtype=torch.int64), torch.empty(n, dtype=torch.int64)
    lib.csa_order(_p(m), n, m.shape[1], _p(order), _p(counts))
    return order, counts.tolist()


_SEARCH = {"auto", "fp32", "bf16"}
# per sample, what the search ran: "bf16+check" (the bf16 product and the fp32 re-check), "fp32"
# (the fp32 product: no AMX, GENFW_CSA_SEARCH=fp32, float64, or the re-check gave up); for tests
search_counts: collections.Counter = collections.Counter()


class SearchSettingError(ConfigError, ValueError):
    """A GENFW_CSA_SEARCH value the layer does not know (the CLI prints it as one line, exit 2)."""


def bf16_search() -> bool:
    """Whether the search's product runs in bf16 with the exact fp32 re-check (`csa_refine_f32`).

    GENFW_CSA_SEARCH=fp32 / bf16 forces it; auto (the default) uses bf16 where the CPU reports AMX
    tiles (``amx_bf16``; there the layer's bf16 product measured ~5x the fp32 one), and elsewhere
    where this process's probe of a layer-sized product (`product_speedup`) runs bf16 at least
    BF16_PRODUCT_MIN times fp32: the casts and the re-check cost about a third of the fp32
    product, and on CPUs without bf16 instructions torch's bf16 product is many times slower.
    Either way the arg-max is fp32's, so the choice changes speed, never outputs."""
    mode = os.environ.get("GENFW_CSA_SEARCH", "auto")
    if mode not in _SEARCH:
        raise SearchSettingError(f"GENFW_CSA_SEARCH must be one of {sorted(_SEARCH)}, got {mode!r}; "
                                 f"unset it to let the layer choose")
    if mode != "auto":
        return mode == "bf16"
    return _amx() or product_speedup() >= BF16_PRODUCT_MIN


BF16_PRODUCT_MIN = 1.6  # bf16 / fp32 speed of the probe product below which the fp32 search wins
_product_cache: dict[int, float] = {}


def product_speedup() -> float:
    """fp32 time / bf16 time of a 256 x 512 by 512 x 768 product (the paper's CSA level at 256 px),
    each the fastest of 5 rounds taking turns, at the current intra-op thread count; measured once
    per process and thread count (about 25 ms where bf16 is fast). 0 where bf16 is still 3x slower
    or worse on its second call: no need to time it further."""
    nt = torch.get_num_threads()
    if nt not in _product_cache:
        with torch.no_grad(), torch.autocast("cpu", enabled=False):
            _product_cache[nt] = _time_products()
    return _product_cache[nt]


def _time_products() -> float:
    import time

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(256, 512, generator=g), torch.randn(768, 512, generator=g)
    ab, bb = a.bfloat16(), b.bfloat16()
    out, outb = torch.empty(256, 768), torch.empty(256, 768, dtype=torch.bfloat16)

    def timed(x, y, o) -> float:
        t0 = time.perf_counter()
        torch.mm(x, y.t(), out=o)
        return time.perf_counter() - t0

    f = min(timed(a, b, out) for _ in range(2))
    h = min(timed(ab, bb, outb) for _ in range(2))  # the first call also pays the set-up
    if h >= 3 * f:
        return 0.0
    for _ in range(5):
        f, h = min(f, timed(a, b, out)), min(h, timed(ab, bb, outb))
    return f / h


@functools.lru_cache(maxsize=1)
def _amx() -> bool:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return "amx_bf16" in line.split()
    return False


def _p(t: torch.Tensor) -> int:
    return t.data_ptr()


def _strides(t: torch.Tensor) -> torch.Tensor:
    return torch.tensor(t.stride(), dtype=torch.int64)


class _Scratch(threading.local):
    """Per-thread scratch memory for the kernel path, grown to the largest call and then reused.

    Why: the buffers of one call are megabytes (the L x K scores, the known rows; without autograd
    also the per-hole rows), and the allocator hands such blocks back to the system on
    free, so a fresh set costs a page fault per 4 KB on every call: measured at batch 1, about 1200
    faults, a third of the layer's forward time. One thread's calls run one after another, so a
    buffer can be reused as soon as its call has returned (nothing handed out points into it)."""

    def __init__(self) -> None:
        self.buffers: dict[tuple[str, torch.dtype], torch.Tensor] = {}
        self.views: dict[tuple[str, torch.dtype, tuple[int, ...]], torch.Tensor] = {}

    def get(self, name: str, numel: int, dtype: torch.dtype) -> torch.Tensor:
        buf = self.buffers.get((name, dtype))
        if buf is None or buf.numel() < numel:
            buf = torch.empty(max(numel, 1), dtype=dtype)
            self.buffers[(name, dtype)] = buf
            # views of the old buffer would write where nobody reads
            self.views = {key: t for key, t in self.views.items() if key[:2] != (name, dtype)}
        return buf[:numel]

    def view(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """A contiguous `shape` view of the buffer's start, made once per shape and then handed out
        again: on a cold cache each tensor op costs microseconds, and a batch-1 call needs a dozen."""
        key = (name, dtype, shape)
        if key not in self.views:
            self.views[key] = self.get(name, math.prod(shape), dtype).view(shape)
        return self.views[key]

    def ptr(self, name: str, numel: int, dtype: torch.dtype) -> int:
        """The address of get(name, numel, dtype) without making a tensor of it (C-only buffers)."""
        buf = self.buffers.get((name, dtype))
        return (buf if buf is not None and buf.numel() >= numel else self.get(name, numel, dtype)).data_ptr()

    def clear(self) -> None:
        self.buffers.clear()
        self.views.clear()


_scratch = _Scratch()


class _Outputs(threading.local):
    """Per-thread recycling of output maps: a new map the size of the last ones reuses the memory
    of one the caller has let go of.

    Why: a freed map of megabytes goes back to the system, and a fresh one costs a page fault per
    4 KB plus the kernel zeroing every page: measured at batch 1 right after a baseline call, 0.25-0.3
    ms of a 2 ms forward. A storage is reused only when this pool holds its last reference (torch's
    storage use count is 1: no tensor, view or saved tensor points into it any more); where that
    count cannot be read, every map is fresh."""

    KEEP = 2  # storages kept per thread: a map in use by the caller and the one being written

    def __init__(self) -> None:
        self.storages: list = []

    def empty_like(self, x: torch.Tensor) -> torch.Tensor:
        nbytes = x.numel() * x.element_size()
        for st in self.storages:
            if st.nbytes() == nbytes and _use_count(st) == 1:
                return x.new_empty(0).set_(st, 0, x.shape, x.stride())
        out = torch.empty_like(x)
        if _use_count is not _no_count:
            self.storages = [*self.storages[-(self.KEEP - 1):], out.untyped_storage()]
        return out


def _no_count(storage) -> int:
    return 2  # never "free": no recycling


_use_count = getattr(torch._C, "_storage_Use_Count", None)
_use_count = (lambda st, f=_use_count: f(st._cdata)) if _use_count is not None else _no_count
_outputs = _Outputs()


def release_scratch() -> None:
    """Free this thread's kernel scratch and kept output maps (rebuilt on the next call)."""
    _scratch.clear()
    _outputs.storages = []


def _fill(ctx, x, order, counts: list[int], lens: list[int], cosine: bool, eps: float, threads: int):
    """Fill's forward; ctx None: `Fill.run` (no autograd, per-hole outputs in scratch)."""
    lib = kernel()
    n, c, h, w = x.shape
    if not (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)):
        x = x.contiguous()
    out = _outputs.empty_like(x)  # same layout as x; the kernel copies x in, sample by sample
    order = order.contiguous()
    offsets = [0]
    for ln in lens:
        offsets.append(offsets[-1] + ln)
    v = offsets[-1]
    dt = x.dtype
    save = ctx is not None and ctx.needs_input_grad[0]
    if save:  # backward reads these rows: they must be its own
        fh, k, m = (x.new_empty(v, c) for _ in range(3))
        sc = x.new_empty(v, 7)
    else:  # the recurrence reads the chosen key rows where they are: no k
        fh, m, sc = _scratch.view("fh", (v, c), dt), _scratch.view("m", (v, c), dt), _scratch.view("sc", (v, 7), dt)
        k = None
    if ctx is None:  # Fill.run: the caller reads these before its thread's next call
        best, pid = _scratch.view("best", (v,), torch.int64), _scratch.view("pid", (v,), torch.int64)
    else:
        best, pid = torch.empty(v, dtype=torch.int64), torch.empty(v, dtype=torch.int64)
    hw, known = h * w, [h * w - cnt for cnt in counts]
    sfx = "f32" if dt == torch.float32 else "f64"
    prepare, run = getattr(lib, f"csa_prepare_{sfx}"), getattr(lib, f"csa_search_fill_{sfx}")
    kmax = max(known)
    nrm, slp = _scratch.ptr("norm", kmax, dt), _scratch.ptr("slot", hw, torch.int64)
    kp = _scratch.ptr("keys", c * kmax, dt)
    # plain pointer arithmetic from here on: at batch 1 a dozen tensor slices per sample cost as
    # much as the kernel's own arithmetic
    sn, sch, sp = x.stride(0), x.stride(1), x.stride(3)  # out has x's strides (empty_like)
    e, i8 = x.element_size(), 8
    xp, op, od, fp = _p(x), _p(out), _p(order), _p(fh)
    mp, scp, bp, pp = _p(m), _p(sc), _p(best), _p(pid)
    kp_save = _p(k) if save else None
    filtered = dt == torch.float32 and bf16_search()
    if filtered:
        nt = torch.get_num_threads()
        sf, fnp = _scratch.ptr("sf", kmax * nt, dt), _scratch.ptr("fnorm", max(lens), dt)
    for s, (ln, kn) in enumerate(zip(lens, known)):
        xs, os_, ords = xp + s * sn * e, op + s * sn * e, od + s * hw * i8
        if ln == 0:
            out[s].copy_(x[s])
            continue
        o = offsets[s]
        prepare(os_, fp + o * c * e, kp, xs, sch, sp, ords, ln, hw, c, slp)
        exact = True  # the fp32 product is needed
        if filtered:
            fbs, kbs = _scratch.view("fb", (ln, c), torch.bfloat16), _scratch.view("kb", (kn, c), torch.bfloat16)
            lib.csa_rows_bf16(_p(fbs), fp + o * c * e, ln, c, fnp)
            lib.csa_rows_bf16(_p(kbs), kp, kn, c, nrm)
            approx = torch.mm(fbs, kbs.t(), out=_scratch.view("sb", (ln, kn), torch.bfloat16))
            # budget: re-scoring a quarter of the pairs costs about what the fp32 product does
            exact = bool(lib.csa_refine_f32(c, ln, kn, _p(approx), fp + o * c * e, kp, fnp, nrm, bp + o * i8,
                                            ln * kn // 4, sf, nt))
        search_counts["fp32" if exact else "bf16+check"] += 1
        scores = None  # None: the refined search has put the arg-max into best already
        if exact:  # L x K: <f_i, key_j>, L x C hole rows against K x C known rows
            kr = _scratch.view("keys", (kn, c), dt)
            scores = _p(torch.mm(fh[o:o + ln], kr.t(), out=_scratch.view("scores", (ln, kn), dt)))
        run(c, ln, kn, scores, kp, ords + ln * i8, fp + o * c * e, ords, int(cosine), eps, os_, sch, sp,
            kp_save + o * c * e if save else None, mp + o * c * e, scp + o * 7 * e, bp + o * i8, pp + o * i8, nrm)
    if ctx is None:
        return out, sc[:, 6], best, pid
    ctx.save_for_backward(*((pid, best, fh, k, m, sc) if save else ()))
    ctx.offsets, ctx.cosine, ctx.sfx, ctx.threads = offsets, cosine, sfx, threads
    return out, sc[:, 6].clone(), best, pid


class Fill(torch.autograd.Function):
    """The C kernel's path, search included: x (N x C x H x W, contiguous or channels_last) with every
    hole replaced by its generated patch. order (N x HW): each sample's hole positions, then its known
    ones, both in raster order; counts: each sample's number of holes; lens: the same with 0 for a
    sample that passes through (no hole, or nothing known); python ints, at least one lens > 0.
    Returns the new map and, for every hole of the batch (sample by sample), the mixing weight a,
    the map position of its best known patch and its own position (none differentiable). Backward
    is the exact gradient, also in C.

    One sample at a time: one pass over its map (the copy into the output and the hole and known
    rows, position-major), its search GEMM and the kernel run while its map is still in cache (a
    whole batch's maps are not). Without autograd, the per-call buffers are this thread's reused
    scratch (`_Scratch`), and the recurrence reads the chosen key rows in place."""

    @staticmethod
    def forward(ctx, x, order, counts: list[int], lens: list[int], cosine: bool, eps: float, threads: int = 0):
        out, a, best, pid = _fill(ctx, x, order, counts, lens, cosine, eps, threads)
        ctx.mark_non_differentiable(a, best, pid)
        return out, a, best, pid

    @staticmethod
    def run(x, order, counts: list[int], lens: list[int], cosine: bool, eps: float, threads: int = 0):
        """`forward` for an x that needs no gradient, without autograd's bookkeeping. The mixing
        weights, best and hole positions are views of this thread's scratch: read them before
        this thread's next call."""
        return _fill(None, x, order, counts, lens, cosine, eps, threads)

    @staticmethod
    def backward(ctx, g_out, _g_a, _g_best, _g_pid):
        with intra_op_threads(ctx.threads):
            return Fill._backward(ctx, g_out)

    @staticmethod
    def _backward(ctx, g_out):
        pid, best, fh, k, m, sc = ctx.saved_tensors
        nid = torch.cat([torch.full((b - a,), s, dtype=torch.int64) for s, (a, b) in
                         enumerate(zip(ctx.offsets[:-1], ctx.offsets[1:]))])  # each hole's sample
        n, c, h, w = g_out.shape
        gx = g_out.clone(memory_format=torch.contiguous_format)
        g3 = gx.view(n, c, h * w)
        gs = _strides(g3)
        off = torch.tensor(ctx.offsets, dtype=torch.int64)
        gr, gk, g = torch.empty_like(fh), torch.empty_like(k), fh.new_empty(c)
        getattr(kernel(), f"csa_fill_backward_{ctx.sfx}")(len(ctx.offsets) - 1, _p(off), c, _p(g3), _p(gs), _p(nid),
                                                         _p(pid), _p(best), int(ctx.cosine), _p(fh), _p(k), _p(m),
                                                         _p(sc), _p(gr), _p(gk), _p(g))
        return gx, None, None, None, None, None, None, None


# --- torch-op fallback: the same arithmetic, vectorised across samples (padded, time-major) ------

def _padded(rows: torch.Tensor, offsets: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """V x ... compact rows -> L x N x ... time-major (zeros past each sample's end), and the
    (t, n) positions of the real rows."""
    lens = [b - a for a, b in zip(offsets[:-1], offsets[1:])]
    steps, n = max(lens), len(lens)
    t_idx = torch.cat([torch.arange(ln) for ln in lens]).to(rows.device)
    n_idx = torch.cat([torch.full((ln,), i, dtype=torch.long) for i, ln in enumerate(lens)]).to(rows.device)
    out = rows.new_zeros((steps, n) + tuple(rows.shape[1:]))
    out[t_idx, n_idx] = rows
    return out, (t_idx, n_idx)


def _torch_forward(fh, k, e, offsets: list[int], cosine: bool):
    fh_p, at_ = _padded(fh, offsets)
    k_p, _ = _padded(k, offsets)
    e_p, _ = _padded(e, offsets)
    e_p = torch.where(e_p > 0, e_p, torch.ones_like(e_p))  # padded steps: any positive e
    steps, n, c = k_p.shape
    out = torch.empty_like(k_p)
    dads, norms = [], []
    m = k_p.new_zeros(n, c)
    for t, (fh_t, k_t, e_t, out_t) in enumerate(zip(fh_p.unbind(0), k_p.unbind(0), e_p.unbind(0), out.unbind(0))):
        p = torch.linalg.vecdot(m, fh_t)
        nr = torch.linalg.vector_norm(m, dim=-1).clamp_min_(TINY) if cosine else torch.ones_like(p)
        if cosine:
            p = p / nr
        dads.append(p)
        norms.append(nr)
        d = p.clamp_min(0)
        m = torch.lerp(k_t, m, (d / (d + e_t)).unsqueeze_(-1), out=out_t)
    dad, nrm = torch.stack(dads)[at_], torch.stack(norms)[at_]
    d = dad.clamp_min(0)
    return out[at_], dad, nrm, d / (d + e)


def _torch_backward(go, fh, k, e, out, dad, nrm, a, offsets: list[int], cosine: bool):
    first = torch.zeros(len(a), dtype=torch.bool, device=a.device)
    first[torch.tensor(offsets[:-1], device=a.device)] = True
    prev = torch.cat([out.new_zeros(1, out.shape[1]), out[:-1]], 0)
    prev[first] = 0  # m_{-1} = 0 at each sample's first hole
    s = dad.clamp_min(0) + e
    coef = torch.where((dad > 0) & ~first, e / (s * s), torch.zeros_like(e)).unsqueeze(-1)
    if cosine:
        unit_prev = prev / nrm.unsqueeze(-1)
        u = (fh - dad.unsqueeze(-1) * unit_prev) / nrm.unsqueeze(-1)
    else:
        unit_prev, u = prev, fh
    uc_p, at_ = _padded(u * coef, offsets)
    w_p, _ = _padded(prev - k, offsets)
    go_p, _ = _padded(go, offsets)
    a_p, _ = _padded(a.unsqueeze(-1), offsets)  # padded steps: a = 0, go = 0, so g stays 0 there
    g_all = torch.empty_like(go_p)
    gas = []
    g = go_p.new_zeros(go_p.shape[1:])
    for go_t, gall_t, w_t, uc_t, a_t in zip(go_p.unbind(0)[::-1], g_all.unbind(0)[::-1], w_p.unbind(0)[::-1],
                                            uc_p.unbind(0)[::-1], a_p.unbind(0)[::-1]):
        gt = torch.add(go_t, g, out=gall_t)
        ga_t = torch.linalg.vecdot(gt, w_t).unsqueeze_(-1)
        gas.append(ga_t)
        g = torch.addcmul(gt * a_t, ga_t, uc_t)
    ga = torch.stack(gas[::-1])[at_]  # V x 1
    g_all = g_all[at_]
    g_fh = ga * coef * unit_prev
    g_k = (1 - a).unsqueeze(-1) * g_all
    g_e = -ga.squeeze(-1) * dad.clamp_min(0) / (s * s)
    return g_fh, g_k, g_e


class Generate(torch.autograd.Function):
    """The torch-op path of the recurrence with its exact backward (where the kernel is unavailable).
    fh, k: V x C; e: V (> 0); offsets: N + 1 ints. Returns M (V x C) and the mixing weights a
    (V, not differentiable)."""

    @staticmethod
    def forward(ctx, fh, k, e, offsets: list[int], cosine: bool):
        out, dad, nrm, a = _torch_forward(fh, k, e, offsets, cosine)
        ctx.save_for_backward(fh, k, e, out, dad, nrm, a)
        ctx.offsets, ctx.cosine = offsets, cosine
        ctx.mark_non_differentiable(a)
        return out, a

    @staticmethod
    def backward(ctx, g_out, _g_a):
        fh, k, e, out, dad, nrm, a = ctx.saved_tensors
        g_fh, g_k, g_e = _torch_backward(g_out.contiguous(), fh, k, e, out, dad, nrm, a, ctx.offsets, ctx.cosine)
        return g_fh, g_k, g_e, None, None
