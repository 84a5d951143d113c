# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The per-prediction hot path in C (Cython), built by ``pip install`` (``setup.py``).

A monitored prediction costs, on the caller's thread, one id (``<prefix>-<counter>-<tag>``,
:mod:`leanml.groundtruth.ids`), one slot of the pending-join ring
(:mod:`leanml.groundtruth.ring`) and one record appended to the monitor's intake
(:meth:`leanml.monitor.ModelMonitor.record`). In Python those took ~1.5 us per prediction in
a tight loop and 3-6 us right after a large model's predict (its memory traffic evicts what
the interpreter touches: every function, attribute and frame). Here each is a few C
statements over a handful of fields. Then, per sampled prediction on the flusher's thread, the
redaction of its text (:mod:`leanml.monitor._redact`).

The Python classes keep everything else (validation, joins, verification) and subclass or call
these, so there is one implementation of each rule:

* :class:`IssuerCore`: the tags of a block of 8 counters (AES-128 with the x86 AES
  instructions, else the keyed BLAKE2b; both in C; the last block's cached),
  :meth:`~IssuerCore.make` one id, :meth:`~IssuerCore.take` ``n`` consecutive ids.
* :class:`RingCore`: the counter, :meth:`~RingCore.put` and :meth:`~RingCore.put_one` (the
  slots, counting the unlabeled predictions they evict).
* :class:`IssueCore`: :meth:`~IssueCore.issue` and :meth:`~IssueCore.issue_one`, the two above
  under the ring's lock.
* :class:`Recorder`: :meth:`~Recorder.record`, one record put in a bounded
  :class:`SingleBuffer` (columns, no tuple).
* :class:`OneCall`: the monitored wrapper's one-input ``predict``, from the call to the answer.
* :func:`top_softmax`: a compact linear head's top class and its softmax probability.
* :func:`mark_spans`, :func:`sub_marks`, :func:`mask_digits`: the redaction patterns' matches.
* :func:`sample_hashes_of_str`: the per-id sampling hash of ``str`` ids (CRC-32, as zlib's);
  :class:`Sampler`: the flusher's sampling decision, the same hash.
* :func:`detail_fields`: a sampled row's id, stored text (the whole redaction) and SHA-256
  (with the x86 SHA instructions where the CPU has them), without a Python call per item.
* :meth:`SingleBuffer.take`, :func:`take_batches`: the flusher's intake, taken as columns
  (:data:`TAKEN_COLUMNS`), the sampled predictions picked on the way.

Every method runs with the GIL held and calls no Python code of its own between reading and
writing a field (only C functions: ``time.time``, list appends), so the
cached digest and the counter change as one step for any other thread. A clock written in
Python could let another thread run inside :meth:`RingCore.put_one`: the ring's lock covers
that.
"""

import math
import threading
import time

import numpy as np

from cpython.buffer cimport (
    PyBUF_FORMAT, PyBUF_STRIDES, PyBuffer_Release, PyObject_CheckBuffer, PyObject_GetBuffer,
)
from cpython.object cimport PyObject
from cpython.pythread cimport (
    NOWAIT_LOCK,
    WAIT_LOCK,
    PyThread_acquire_lock,
    PyThread_allocate_lock,
    PyThread_free_lock,
    PyThread_release_lock,
    PyThread_type_lock,
)
from libc.math cimport HUGE_VAL, ceil, exp, isnan, log
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memchr, memcpy, memmove
from posix.time cimport CLOCK_MONOTONIC, CLOCK_REALTIME, clock_gettime, timespec


cdef extern from *:
    """
    #if defined(__SSE2__)
    #include <emmintrin.h>
    #endif
    /* The first i >= from with t[i] an ASCII digit, '+' or '(' (n when none): 16 bytes at a
       time with SSE2 (no Latin-1 character above 127 is a decimal digit). */
    static Py_ssize_t leanml_next_digit_start(const unsigned char* t, Py_ssize_t i, Py_ssize_t n) {
    #if defined(__SSE2__)
        const __m128i lo = _mm_set1_epi8('0' - 1), hi = _mm_set1_epi8('9' + 1);
        const __m128i plus = _mm_set1_epi8('+'), paren = _mm_set1_epi8('(');
        for (; i + 16 <= n; i += 16) {
            __m128i v = _mm_loadu_si128((const __m128i*)(t + i));
            __m128i hit = _mm_and_si128(_mm_cmpgt_epi8(v, lo), _mm_cmplt_epi8(v, hi));
            hit = _mm_or_si128(hit, _mm_or_si128(_mm_cmpeq_epi8(v, plus), _mm_cmpeq_epi8(v, paren)));
            int mask = _mm_movemask_epi8(hit);
            if (mask) return i + __builtin_ctz(mask);
        }
    #endif
        for (; i < n; i++) {
            unsigned char c = t[i];
            if ((c >= '0' && c <= '9') || c == '+' || c == '(') return i;
        }
        return n;
    }
    /* The first i >= from where the k >= 2 bytes of w start in t[:n] (n when none): each
       16-byte step compares the first and the last byte of w at 16 positions at once (SSE2),
       the middle bytes only where both match. glibc's memmem was the flusher's top native
       function on a server's sampled e-mails ("://" and "www." in every text). */
    static Py_ssize_t leanml_find(const unsigned char* t, Py_ssize_t i, Py_ssize_t n,
                                  const char* w, Py_ssize_t k) {
    #if defined(__SSE2__)
        const __m128i first = _mm_set1_epi8(w[0]), last = _mm_set1_epi8(w[k - 1]);
        for (; i + 15 + k <= n; i += 16) {
            __m128i a = _mm_loadu_si128((const __m128i*)(t + i));
            __m128i b = _mm_loadu_si128((const __m128i*)(t + i + k - 1));
            unsigned mask = (unsigned)_mm_movemask_epi8(
                _mm_and_si128(_mm_cmpeq_epi8(a, first), _mm_cmpeq_epi8(b, last)));
            while (mask) {
                int bit = __builtin_ctz(mask);
                if (memcmp(t + i + bit + 1, w + 1, (size_t)(k - 2)) == 0) return i + bit;
                mask &= mask - 1;
            }
        }
    #endif
        for (; i + k <= n; i++) {
            if (t[i] == (unsigned char)w[0] && memcmp(t + i, w, (size_t)k) == 0) return i;
        }
        return n;
    }
    """
    Py_ssize_t leanml_next_digit_start(const unsigned char* t, Py_ssize_t i, Py_ssize_t n) nogil
    Py_ssize_t leanml_find(const unsigned char* t, Py_ssize_t i, Py_ssize_t n, const char* w,
                           Py_ssize_t k) nogil



cdef extern from "Python.h":
    ctypedef unsigned char Py_UCS1
    ctypedef unsigned short Py_UCS2
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    object PyUnicode_FromKindAndData(int kind, const void* buffer, Py_ssize_t size)
    void* PyUnicode_DATA(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)
    int PyUnicode_KIND(object o)
    bint PyUnicode_IS_COMPACT_ASCII(object o)
    bint Py_UNICODE_ISSPACE(Py_UCS4 ch)
    bint Py_UNICODE_ISALNUM(Py_UCS4 ch)
    bint Py_UNICODE_ISDECIMAL(Py_UCS4 ch)
    ctypedef struct PyThreadState:
        pass
    PyThreadState* PyThreadState_Get()
    unsigned long long PyThreadState_GetID(PyThreadState* tstate)

cdef long long _PENDING = 1
_MANY = (list, tuple, np.ndarray)
#: bytes of one tag (16 hex digits); ids per digest (a 64-byte digest holds 8 tags)
cdef int _TAG_BYTES = 8
cdef int _SHIFT = 3
cdef long long _MASK = 7
cdef const char* _HEX = b"0123456789abcdef"
#: the two hex digits of each byte value, in order ("000102...ff")
_HEX_PAIRS_BYTES = "".join(f"{i:02x}" for i in range(256)).encode("ascii")
cdef const char* _HEX_PAIRS = _HEX_PAIRS_BYTES


cdef Py_ssize_t _argmax(const double[:] row) noexcept:
    """``argmax`` as numpy's: the first of equal maxima, the first NaN (``row`` not empty)."""
    cdef Py_ssize_t k, top = 0
    cdef double best = row[0]
    for k in range(row.shape[0]):
        if isnan(row[k]):
            return k
        if row[k] > best:
            best, top = row[k], k
    return top


def top_softmax(const double[::1] scores):
    """(index of the largest score, its softmax probability ``1 / sum(exp(s - s[top]))``)
    of one row of scores in one pass: ``argmax`` as numpy's (the first of equal maxima, the
    first NaN), the sum in order."""
    cdef Py_ssize_t k, top
    cdef double best, total = 0.0
    if scores.shape[0] == 0:
        raise ValueError("no scores")
    top = _argmax(scores)
    best = scores[top]
    if isnan(best):
        return top, best
    for k in range(scores.shape[0]):
        total += exp(scores[k] - best)
    return top, 1.0 / total


cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* BLAKE2b (RFC 7693), 64-byte digest, as hashlib.blake2b(key=..., digest_size=64): the
       state after the key block is kept, then one message of at most 128 bytes is hashed. */
    static const uint64_t leanml_b2_iv[8] = {
        0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL,
        0xa54ff53a5f1d36f1ULL, 0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL,
        0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL};
    static const uint8_t leanml_b2_sigma[12][16] = {
        {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
        {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
        {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
        {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
        {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
        {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
        {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
        {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
        {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
        {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
        {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
        {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3}};
    #define LEANML_ROTR64(x, r) (((x) >> (r)) | ((x) << (64 - (r))))
    #define LEANML_B2G(a, b, c, d, x, y)                                          \
        do {                                                                  \
            a = a + b + (x); d = LEANML_ROTR64(d ^ a, 32);                     \
            c = c + d;       b = LEANML_ROTR64(b ^ c, 24);                     \
            a = a + b + (y); d = LEANML_ROTR64(d ^ a, 16);                     \
            c = c + d;       b = LEANML_ROTR64(b ^ c, 63);                     \
        } while (0)
    static void leanml_b2_compress(uint64_t h[8], const unsigned char block[128], uint64_t t,
                                   int last) {
        uint64_t m[16], v[16];
        for (int i = 0; i < 16; i++) {
            uint64_t x = 0;
            for (int k = 7; k >= 0; k--) x = (x << 8) | block[8 * i + k];  /* little-endian */
            m[i] = x;
        }
        for (int i = 0; i < 8; i++) { v[i] = h[i]; v[i + 8] = leanml_b2_iv[i]; }
        v[12] ^= t;
        if (last) v[14] = ~v[14];
        /* the rounds written out, so that every message index is a constant */
    #define LEANML_B2R(r)                                                                  \
        do {                                                                           \
            const uint8_t* s = leanml_b2_sigma[r];                                     \
            LEANML_B2G(v[0], v[4], v[8], v[12], m[s[0]], m[s[1]]);                      \
            LEANML_B2G(v[1], v[5], v[9], v[13], m[s[2]], m[s[3]]);                      \
            LEANML_B2G(v[2], v[6], v[10], v[14], m[s[4]], m[s[5]]);                     \
            LEANML_B2G(v[3], v[7], v[11], v[15], m[s[6]], m[s[7]]);                     \
            LEANML_B2G(v[0], v[5], v[10], v[15], m[s[8]], m[s[9]]);                     \
            LEANML_B2G(v[1], v[6], v[11], v[12], m[s[10]], m[s[11]]);                   \
            LEANML_B2G(v[2], v[7], v[8], v[13], m[s[12]], m[s[13]]);                    \
            LEANML_B2G(v[3], v[4], v[9], v[14], m[s[14]], m[s[15]]);                    \
        } while (0)
        LEANML_B2R(0); LEANML_B2R(1); LEANML_B2R(2); LEANML_B2R(3); LEANML_B2R(4);
        LEANML_B2R(5); LEANML_B2R(6); LEANML_B2R(7); LEANML_B2R(8); LEANML_B2R(9);
        LEANML_B2R(10); LEANML_B2R(11);
        for (int i = 0; i < 8; i++) h[i] ^= v[i] ^ v[i + 8];
    }
    /* The state after the key (at most 64 bytes; none: unkeyed) and the bytes it covers. */
    static void leanml_b2_keyed(uint64_t h[8], uint64_t* t, const unsigned char* key, size_t kk) {
        unsigned char block[128];
        for (int i = 0; i < 8; i++) h[i] = leanml_b2_iv[i];
        h[0] ^= 0x01010000ULL ^ ((uint64_t)kk << 8) ^ 64;  /* fanout 1, depth 1, 64 bytes */
        *t = 0;
        if (kk) {
            memset(block, 0, sizeof block);
            memcpy(block, key, kk);
            leanml_b2_compress(h, block, 128, 0);
            *t = 128;
        }
    }
    /* The digest of one message of n <= 128 bytes after the state (h0, t0). */
    static void leanml_b2_final(const uint64_t h0[8], uint64_t t0, const unsigned char* msg,
                                size_t n, unsigned char out[64]) {
        uint64_t h[8];
        unsigned char block[128];
        memcpy(h, h0, sizeof h);
        memset(block, 0, sizeof block);
        memcpy(block, msg, n);
        leanml_b2_compress(h, block, t0 + n, 1);
        for (int i = 0; i < 8; i++)
            for (int k = 0; k < 8; k++) out[8 * i + k] = (unsigned char)(h[i] >> (8 * k));
    }

    /* AES-128 with the x86 AES instructions (Intel's white paper "Advanced Encryption
       Standard (AES) New Instructions Set", key expansion as its AES_128_Key_Expansion): the
       tags of one block of ids as 4 AES blocks of (block counter, j) for j = 0..3, 16 times
       cheaper than a BLAKE2b digest. Used only where CPUID reports them. */
    #if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    #include <cpuid.h>
    #include <immintrin.h>
    __attribute__((target("aes,sse2")))
    static inline __m128i leanml_aes_next(__m128i k, __m128i t) {
        t = _mm_shuffle_epi32(t, 0xff);
        k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
        k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
        k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
        return _mm_xor_si128(k, t);
    }
    #define LEANML_AES_KEY(i, rcon)                                                        \
        do {                                                                           \
            k = leanml_aes_next(k, _mm_aeskeygenassist_si128(k, rcon));                 \
            _mm_storeu_si128((__m128i*)(rk + 16 * (i)), k);                              \
        } while (0)
    __attribute__((target("aes,sse2")))
    static void leanml_aes128_expand(const unsigned char key[16], unsigned char rk[176]) {
        __m128i k = _mm_loadu_si128((const __m128i*)key);
        _mm_storeu_si128((__m128i*)rk, k);
        LEANML_AES_KEY(1, 0x01); LEANML_AES_KEY(2, 0x02); LEANML_AES_KEY(3, 0x04);
        LEANML_AES_KEY(4, 0x08); LEANML_AES_KEY(5, 0x10); LEANML_AES_KEY(6, 0x20);
        LEANML_AES_KEY(7, 0x40); LEANML_AES_KEY(8, 0x80); LEANML_AES_KEY(9, 0x1b);
        LEANML_AES_KEY(10, 0x36);
    }
    /* out = AES(rk, block || 0) .. AES(rk, block || 3), each half 8 bytes little-endian. */
    __attribute__((target("aes,sse2")))
    static void leanml_aes128_tags(const unsigned char rk[176], uint64_t block,
                                   unsigned char out[64]) {
        __m128i k = _mm_loadu_si128((const __m128i*)rk);
        __m128i b0 = _mm_xor_si128(_mm_set_epi64x(0, (long long)block), k);
        __m128i b1 = _mm_xor_si128(_mm_set_epi64x(1, (long long)block), k);
        __m128i b2 = _mm_xor_si128(_mm_set_epi64x(2, (long long)block), k);
        __m128i b3 = _mm_xor_si128(_mm_set_epi64x(3, (long long)block), k);
        for (int r = 1; r < 10; r++) {
            k = _mm_loadu_si128((const __m128i*)(rk + 16 * r));
            b0 = _mm_aesenc_si128(b0, k); b1 = _mm_aesenc_si128(b1, k);
            b2 = _mm_aesenc_si128(b2, k); b3 = _mm_aesenc_si128(b3, k);
        }
        k = _mm_loadu_si128((const __m128i*)(rk + 160));
        _mm_storeu_si128((__m128i*)out, _mm_aesenclast_si128(b0, k));
        _mm_storeu_si128((__m128i*)(out + 16), _mm_aesenclast_si128(b1, k));
        _mm_storeu_si128((__m128i*)(out + 32), _mm_aesenclast_si128(b2, k));
        _mm_storeu_si128((__m128i*)(out + 48), _mm_aesenclast_si128(b3, k));
    }
    static int leanml_aes_ni_supported(void) {
        unsigned int a, b, c, d;
        return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 25)) && (d & (1u << 26));
    }  /* AES and SSE2 */
    #else
    static void leanml_aes128_expand(const unsigned char key[16], unsigned char rk[176]) {}
    static void leanml_aes128_tags(const unsigned char rk[176], uint64_t block,
                                   unsigned char out[64]) {}
    static int leanml_aes_ni_supported(void) { return 0; }
    #endif
    """
    void leanml_aes128_expand(const unsigned char* key, unsigned char* rk) nogil
    void leanml_aes128_tags(const unsigned char* rk, unsigned long long block,
                            unsigned char* out) nogil
    int leanml_aes_ni_supported()
    void leanml_b2_keyed(unsigned long long* h, unsigned long long* t, const unsigned char* key,
                         size_t kk) nogil
    void leanml_b2_final(const unsigned long long* h0, unsigned long long t0,
                         const unsigned char* msg, size_t n, unsigned char* out) nogil


cdef inline Py_ssize_t _put_hex(char* buf, Py_ssize_t n, unsigned long long c) noexcept:
    """Write ``c`` in lowercase hex (no leading zeros) at ``buf[n]``; the position after it."""
    cdef Py_ssize_t start = n, k
    while True:  # the digits, lowest first, then reversed in place
        buf[n] = _HEX[c & 15]
        n += 1
        c >>= 4
        if c == 0:
            break
    k = n - 1
    while start < k:
        buf[start], buf[k] = buf[k], buf[start]
        start += 1
        k -= 1
    return n


#: whether this CPU has the x86 AES instructions (then the tags of ids are AES-128, see
#: :class:`IssuerCore`)
AES_NI = bool(leanml_aes_ni_supported())
#: the BLAKE2b message from which an issuer's AES key is derived: this, then its prefix
_AES_KEY_OF = b"leanml-aes-128:"


cdef class IssuerCore:
    """Mints the ids of one prefix; the subclass sets :attr:`prefix` (ASCII, at most 32
    characters) and the secret (:meth:`set_key`).

    The 64 bytes holding the tags of a block of 8 counters (:meth:`digest`) are, with the x86
    AES instructions (:data:`AES_NI`), AES-128 of the 4 blocks ``(block, j)`` (two 8-byte
    little-endian integers, ``j`` = 0..3) under the key ``BLAKE2b(secret, "leanml-aes-128:" +
    prefix)[:16]``, ~20 ns; else the keyed BLAKE2b of ``prefix-<block in hex>``, ~300 ns (both
    computed here in C). Either is a pseudo-random function of the block under the secret,
    and only the issuing process ever checks a tag, so the choice is per process."""

    cdef bytes _prefix
    cdef long long _block
    cdef unsigned char _digest[64]
    cdef unsigned long long _h0[8]
    cdef unsigned long long _t0
    cdef bint _keyed
    cdef bint _aes
    cdef unsigned char _rk[176]  # AES-128 round keys (with _aes)

    def __cinit__(self):
        self._prefix = b""
        self._block = -1
        self._keyed = False
        self._aes = False

    @property
    def prefix(self):
        return self._prefix.decode("ascii")

    @prefix.setter
    def prefix(self, str value):
        if not value.isascii() or len(value) > 32:  # the id is built in an 80-byte buffer
            raise ValueError(f"an id prefix is at most 32 ASCII characters, got {value!r}")
        self._prefix = value.encode("ascii")
        self._block = -1
        if self._aes:
            self._derive_aes_key()

    @property
    def tag_function(self):
        """``"aes-128"`` or ``"blake2b"``: what computes the tags."""
        return "aes-128" if self._aes else "blake2b"

    def set_key(self, const unsigned char[:] key, aes=None):
        """The secret (at most 64 bytes: BLAKE2b's key). ``aes``: whether the tags are AES-128
        (None: where the CPU has the AES instructions; True elsewhere is a ValueError)."""
        if key.shape[0] > 64:
            raise ValueError(f"a BLAKE2b key is at most 64 bytes, got {key.shape[0]}")
        if aes and not AES_NI:
            raise ValueError("this CPU has no AES instructions")
        leanml_b2_keyed(self._h0, &self._t0, &key[0] if key.shape[0] else NULL, key.shape[0])
        self._keyed = True
        self._block = -1
        self._aes = AES_NI if aes is None else bool(aes)
        if self._aes:
            self._derive_aes_key()

    cdef void _derive_aes_key(self):
        cdef unsigned char out[64]
        cdef bytes msg = _AES_KEY_OF + self._prefix
        leanml_b2_final(self._h0, self._t0, <const unsigned char*>(<const char*>msg), len(msg),
                        out)
        leanml_aes128_expand(out, self._rk)

    cdef void _digest_into(self, long long block, unsigned char* out) except *:
        """The tags of counters ``8 * block .. 8 * block + 7``, 64 bytes, into ``out``."""
        cdef char msg[64]
        cdef bytes prefix = self._prefix
        cdef Py_ssize_t n = len(prefix)
        if not self._keyed:
            raise RuntimeError("IssuerCore: set_key before minting ids")
        if self._aes:
            leanml_aes128_tags(self._rk, <unsigned long long>block, out)
            return
        memcpy(msg, <const char*>prefix, n)
        msg[n] = 45  # "-"
        n = _put_hex(msg, n + 1, <unsigned long long>block)
        leanml_b2_final(self._h0, self._t0, <const unsigned char*>msg, n, out)

    def digest(self, long long block):
        """The 64 bytes holding the tags of counters ``8 * block .. 8 * block + 7``."""
        cdef unsigned char out[64]
        self._digest_into(block, out)
        return bytes(out[:64])

    cdef str _id(self, long long counter, const unsigned char* digest):
        """``<prefix>-<counter in hex>-<16 hex digits of its slot in digest>``."""
        cdef char buf[80]
        cdef bytes prefix = self._prefix
        cdef Py_ssize_t n = len(prefix), k
        cdef const unsigned char* tag = digest + (counter & _MASK) * _TAG_BYTES
        memcpy(buf, <const char*>prefix, n)
        buf[n] = 45  # "-"
        n = _put_hex(buf, n + 1, <unsigned long long>counter)
        buf[n] = 45
        n += 1
        for k in range(_TAG_BYTES):
            memcpy(buf + n, _HEX_PAIRS + 2 * tag[k], 2)
            n += 2
        out = PyUnicode_New(n, 127)
        memcpy(PyUnicode_DATA(out), buf, n)
        return out

    cdef inline str _make(self, long long counter):
        cdef long long block = counter >> _SHIFT
        if block != self._block:
            self._digest_into(block, self._digest)
            self._block = block
        return self._id(counter, self._digest)

    def make(self, long long counter):
        """The id of ``counter``; consecutive counters share the cached digest of their
        block."""
        return self._make(counter)

    cpdef str expected(self, long long counter):
        """The id of ``counter``, the cache left alone (to verify an id: joins read old
        blocks)."""
        cdef unsigned char digest[64]
        self._digest_into(counter >> _SHIFT, digest)
        return self._id(counter, digest)

    def take(self, long long start, Py_ssize_t n):
        """The ids of counters ``start .. start + n - 1`` (one digest per block they touch)."""
        return self._take(start, n)

    cdef list _take(self, long long start, Py_ssize_t n):
        cdef list out = [None] * max(n, 0)
        cdef Py_ssize_t k
        for k in range(n):
            out[k] = self._make(start + k)
        return out


cdef inline double _now_unix() noexcept:
    """``time.time()`` (CLOCK_REALTIME, as CPython reads it on Linux), without a Python call."""
    cdef timespec t
    clock_gettime(CLOCK_REALTIME, &t)
    return t.tv_sec + t.tv_nsec * 1e-9


cdef object _time_time = time.time


cdef inline double _read_clock(clock) except? -1.0:
    """``clock()``; read in C when it is ``time.time``."""
    return _now_unix() if clock is _time_time else clock()


cdef class RingCore:
    """The counter and the puts of :class:`~leanml.groundtruth.ring.PendingRing`; the
    subclass binds the columns (:meth:`bind`) and does the rest."""

    cdef public long long issued
    cdef public long long capacity
    cdef public double max_age_s
    cdef public object clock
    #: unlabeled predictions whose slot a new one took: older than ``max_age_s``, or not
    cdef public long long evicted_age
    cdef public long long evicted_capacity
    cdef double[::1] _ts
    cdef signed char[::1] _state
    cdef short[::1] _code
    cdef int[::1] _pred
    cdef double[::1] _conf
    cdef Py_ssize_t _slots  # 0 until bound

    def bind(self, ts, state, code, pred, conf):
        """The ring's columns (``array.array`` of 'd', 'b', 'h', 'i', 'd', all ``capacity``
        long: the memory the numpy views of the subclass read too)."""
        if self.capacity < 1 or any(len(a) != self.capacity for a in (ts, state, code, pred, conf)):
            raise ValueError(f"the ring's columns must each hold capacity={self.capacity} slots")
        self._ts, self._state, self._code, self._pred, self._conf = ts, state, code, pred, conf
        self._slots = self.capacity

    cpdef long long put_one(self, int code, int pred, double conf) except -1:
        """Reserve one counter for a prediction of class index ``pred`` with confidence
        ``conf`` by monitor ``code``; the counter."""
        return self._put_one(code, pred, conf)

    cdef long long _put_one(self, int code, int pred, double conf) except -1:
        if not self._slots:
            raise RuntimeError("RingCore.put_one before bind")
        cdef double now = _read_clock(self.clock)
        cdef long long start = self.issued
        self.issued = start + 1
        self._put(start, now, code, pred, conf)
        return start

    def put(self, Py_ssize_t n, int code, pred=0, conf=math.nan):
        """Reserve ``n`` counters for predictions of class indices ``pred`` with confidences
        ``conf`` (sequences of ``n``, or one value for all) by monitor ``code``; the first
        counter."""
        if n < 0 or not self._slots:
            raise ValueError(f"a put needs n >= 0 and bound columns, got n={n}")
        if n == 1:
            return self.put_one(
                code,
                int(pred[0] if isinstance(pred, _MANY) else pred),
                float(conf[0] if isinstance(conf, _MANY) else conf),
            )
        # the class indices and confidences read through the buffer protocol into one C array
        # (a numpy array is not copied first): typed memoryviews and np.ascontiguousarray cost
        # ~40 us a call on the cold caches a server's request path runs on
        cdef bint many_p = isinstance(pred, _MANY), many_c = isinstance(conf, _MANY)
        cdef double* vals = (
            <double*>malloc((2 * n + 1) * sizeof(double)) if many_p or many_c else NULL
        )
        if (many_p or many_c) and vals == NULL:
            raise MemoryError()
        cdef int one_p
        cdef double one_c
        cdef Py_ssize_t k
        cdef long long start
        cdef double now
        try:
            if many_p:
                _copy_numbers(pred, vals, n, "pred")
            else:
                one_p = pred
            if many_c:
                _copy_numbers(conf, vals + n, n, "conf")
            else:
                one_c = conf
            now = _read_clock(self.clock)
            start = self.issued
            self.issued = start + n
            for k in range(n):
                self._put(
                    start + k,
                    now,
                    code,
                    <int>vals[k] if many_p else one_p,
                    vals[n + k] if many_c else one_c,
                )
        finally:
            free(vals)
        return start

    cdef inline void _put(self, long long counter, double now, int code, int pred, double conf):
        """Write one slot, counting the unlabeled prediction it held (``evicted_age`` when it
        was older than ``max_age_s``, else ``evicted_capacity``)."""
        cdef Py_ssize_t i = counter % self._slots
        if self._state[i] == _PENDING:
            if self._ts[i] < now - self.max_age_s:
                self.evicted_age += 1
            else:
                self.evicted_capacity += 1
        self._ts[i] = now
        self._state[i] = _PENDING
        self._code[i] = code
        self._pred[i] = pred
        self._conf[i] = conf


cdef class RingLock:
    """The lock around the pending ring (:attr:`IssueCore.lock`): ``with lock:``, or
    :meth:`acquire` / :meth:`release`, as a ``threading.Lock``. It also says whether a thread
    holds it (:attr:`held`, set once it is acquired and cleared before it is released), which
    lets :meth:`IssueCore.issue_one` skip it: see there."""

    cdef PyThread_type_lock _lock
    cdef readonly bint held

    def __cinit__(self):
        self._lock = PyThread_allocate_lock()
        if self._lock == NULL:
            raise MemoryError()
        self.held = False

    def __dealloc__(self):
        if self._lock != NULL:
            PyThread_free_lock(self._lock)

    cdef int _acquire(self) except -1:
        if not PyThread_acquire_lock(self._lock, NOWAIT_LOCK):
            with nogil:  # another thread holds it: wait without the GIL
                PyThread_acquire_lock(self._lock, WAIT_LOCK)
        self.held = True
        return 0

    cdef void _release(self) noexcept:
        self.held = False
        PyThread_release_lock(self._lock)

    def acquire(self):
        """Wait for the lock and take it; True."""
        self._acquire()
        return True

    def release(self):
        if not self.held:
            raise RuntimeError("release unlocked lock")
        self._release()

    def locked(self):
        return self.held

    def __enter__(self):
        self._acquire()
        return self

    def __exit__(self, *exc):
        self._release()
        return False


cdef class IssueCore:
    """:meth:`issue` and :meth:`issue_one` of :class:`~leanml.groundtruth.path.GroundTruth`;
    the subclass sets :attr:`issuer` and :attr:`ring`. :attr:`lock` is held by every access to
    the ring but :meth:`issue_one`'s (see there)."""

    cdef public IssuerCore issuer
    cdef public RingCore ring
    cdef readonly RingLock lock

    def __cinit__(self):
        self.lock = RingLock()

    def issue(self, Py_ssize_t n, int code=0, pred=0, conf=math.nan):
        """Ids of ``n`` new predictions (class indices ``pred``, confidences ``conf``: arrays
        of ``n`` or one value) by monitor ``code``."""
        self.lock._acquire()
        try:
            start = self.ring.put(n, code, pred, conf)
        finally:
            self.lock._release()
        return self.issuer._take(start, n)

    def issue_one(self, int code, int pred, double conf):
        """The id of one new prediction (class index ``pred``, confidence ``conf``) by
        monitor ``code``."""
        return self._issue_one(code, pred, conf)

    cdef str _issue_one(self, int code, int pred, double conf):
        # Taking the lock was ~40% of the caller's monitoring cost with a model between two
        # calls (its acquire and release were Python calls, on the cold caches a model
        # leaves). It is not needed while no thread holds it and the ring reads time.time in
        # C: the put then runs no Python code and
        # allocates nothing (no collection, no finalizer), so it keeps the GIL from start to
        # end and no other thread can see or touch the ring in between. A thread that takes
        # the lock sets ``held`` before it touches the ring (with the GIL), and clears it
        # after.
        cdef long long counter
        cdef RingLock lock = self.lock
        if not lock.held and self.ring.clock is _time_time:
            counter = self.ring._put_one(code, pred, conf)
        else:
            lock._acquire()
            try:
                counter = self.ring._put_one(code, pred, conf)
            finally:
                lock._release()
        return self.issuer._make(counter)


cdef class SingleBuffer:
    """The intake of single records (:meth:`~leanml.monitor.ModelMonitor.record`) as columns:
    the ids, labels and inputs in lists, the numbers (confidence, latency, time, token count,
    known-token count) in C arrays. A record costs the caller a few appends and stores, no
    tuple; the flusher takes a chunk already in columns (:meth:`take`). ``len`` is the number
    of records held; ``buf[i]`` the i-th as a tuple ``(id, label, confidence, latency, input,
    time, tokens, known)``. Every method runs under the GIL without calling Python code while
    it changes the columns, so a record and a take never interleave."""

    cdef list ids, labels, inputs
    cdef double* nums  # 5 doubles per record: confidence, latency, time, tokens, known
    cdef Py_ssize_t n, size

    def __cinit__(self):
        self.ids, self.labels, self.inputs = [], [], []
        self.nums = NULL
        self.n = self.size = 0

    def __dealloc__(self):
        free(self.nums)

    def __len__(self):
        return self.n

    def __getitem__(self, Py_ssize_t i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        cdef double* r = self.nums + 5 * i
        return (self.ids[i], self.labels[i], r[0], r[1], self.inputs[i], r[2], r[3], r[4])

    cdef int put(self, pid, label, double conf, double lat, inp, double ts, double tok,
                 double known) except -1:
        cdef Py_ssize_t size
        cdef double* grown
        if self.n == self.size:
            size = max(64, 2 * self.size)
            grown = <double*>realloc(self.nums, size * 5 * sizeof(double))
            if grown == NULL:
                raise MemoryError()
            self.nums, self.size = grown, size
        cdef double* r = self.nums + 5 * self.n
        r[0], r[1], r[2], r[3], r[4] = conf, lat, ts, tok, known
        self.ids.append(pid)
        self.labels.append(label)
        self.inputs.append(inp)
        self.n += 1
        return 0

    def take(self, Py_ssize_t limit, dict label_index, Sampler sampler):
        """Remove the oldest ``min(len, limit)`` records and return them as the flusher's
        columns (:data:`TAKEN_COLUMNS`; ``model_s`` the sum of the finite latencies), the
        records ``sampler`` keeps picked. An input without ``len`` raises TypeError."""
        # Allocating can run the garbage collector, hence other threads' record() calls: those
        # only ever append after the first k records, so the first k are taken by position
        # (slices, not a swap of the lists) and the numbers moved last, with no allocation
        # between reading and updating the count.
        cdef Py_ssize_t i, k = min(self.n, limit)
        cols = np.empty((5, k), dtype=np.float64)
        cdef double[:, ::1] c = cols
        cdef list ids = self.ids[:k], labels = self.labels[:k], inputs = self.inputs[:k]
        del self.ids[:k], self.labels[:k], self.inputs[:k]
        cdef const double* r
        cdef double model_s = 0.0, x
        cdef bint counted = False
        for i in range(k):
            r = self.nums + 5 * i
            c[0, i], c[1, i], c[2, i], c[3, i], c[4, i] = r[0], r[1], r[2], r[3], r[4]
            if r[1] == r[1]:
                model_s += r[1]
            if r[3] >= 0:
                counted = True
        if k < self.n:
            memmove(self.nums, self.nums + 5 * k, (self.n - k) * 5 * sizeof(double))
        self.n -= k
        codes_a = np.empty(k, dtype=np.int32)
        cdef int[::1] codes = codes_a
        cdef _Codes coder = _Codes(label_index)
        for i in range(k):
            codes[i] = coder.code(i, labels[i])
        len_a = np.empty(k, dtype=np.float64)
        cdef double[::1] lens = len_a
        cdef bint any_input = False
        cdef _Picker picker = _Picker(sampler, k)
        for i in range(k):
            item = inputs[i]
            if item is None:
                lens[i] = math.nan
            else:
                lens[i] = _length(item)
                any_input = True
            picker.offer(i, ids[i], c[0, i], item)
        return (
            codes_a, cols[0], cols[1], cols[2], len_a if any_input else None, cols[3], cols[4],
            model_s, counted, coder.unknown_at, coder.unknown, *picker.result(any_input),
        )


cdef inline double _length(item) except -1:
    """``len(item)`` (a TypeError when it has none), a ``str``'s read directly."""
    if type(item) is str:
        return <double>PyUnicode_GET_LENGTH(item)
    return <double>len(item)


cdef class Recorder:
    """:meth:`~leanml.monitor.ModelMonitor.record`: put one record in the intake
    (:class:`SingleBuffer`) while it holds fewer than :attr:`cap`, else call
    ``drop("record_buffer", 1)``. A confidence, latency or count that is not a number is not
    recorded: ``invalid(message)`` is called instead. The record that fills the buffer to
    half its bound calls ``wake()`` (None: nobody), so the flusher takes the buffer before
    its interval ends rather than letting it fill. The first record at or after :attr:`due`
    (the clock's time; +inf: never) calls ``on_due()`` once it is recorded: the monitor runs
    its flusher step there, on the recording thread (see ``_after``)."""

    cdef SingleBuffer _buf
    cdef public Py_ssize_t cap
    cdef public double due
    cdef bint _hit
    cdef object _clock
    cdef object _drop
    cdef object _invalid
    cdef object _wake
    cdef object _on_due

    def __init__(
        self, SingleBuffer buf, Py_ssize_t cap, clock, drop, invalid, wake=None, on_due=None
    ):
        self.due = HUGE_VAL
        self.bind(buf, cap, clock, drop, invalid, wake, on_due)

    def bind(
        self, SingleBuffer buf, Py_ssize_t cap, clock, drop, invalid, wake=None, on_due=None
    ):
        """Point the recorder at another buffer (a forked child's fresh state): the bound
        ``record`` methods handed out before stay valid."""
        self._buf, self.cap, self._clock, self._drop, self._invalid, self._wake = (
            buf, cap, clock, drop, invalid, wake
        )
        self._on_due, self._hit = on_due, False

    def record(
        self, prediction_id, label, confidence, latency_s, input=None, tokens=-1, known=0
    ):
        """Record one prediction; returns at once (no lock, no I/O), unless it is the first
        at or after :attr:`due` (then ``on_due()`` runs before it returns)."""
        self._record(prediction_id, label, confidence, latency_s, input, tokens, known)
        if self._hit:
            self._after()

    cdef inline void _after(self) except *:
        """``on_due()``, if a record since the last call reached :attr:`due`. A caller that
        times its record calls this after its timing (:class:`OneCall`), so the step is not
        counted as the record's cost; :attr:`due` is +inf meanwhile (``on_due`` sets the
        next one)."""
        if self._hit:
            self._hit = False
            self.due = HUGE_VAL
            if self._on_due is not None:
                self._on_due()

    cdef void _record(
        self, prediction_id, label, confidence, latency_s, input, tokens, known
    ) except *:
        cdef double c, lat, ts, tok, kn
        try:  # everything that may run Python code, before the buffer is touched
            c = float(confidence)
            lat = float(latency_s)
            tok = float(tokens)
            kn = float(known)
        except (TypeError, ValueError) as exc:
            self._invalid(f"record {prediction_id!r}: {exc}")
            return
        ts = _read_clock(self._clock)
        if self._buf.n < self.cap:
            self._buf.put(prediction_id, label, c, lat, input, ts, tok, kn)
            if self._buf.n == self.cap >> 1 and self._wake is not None:
                self._wake()
            if ts >= self.due:
                self._hit = True
        else:
            self._drop("record_buffer", 1)


cdef inline long long _now_ns() noexcept:
    """``time.perf_counter_ns()`` (the same clock on Linux), without a Python call."""
    cdef timespec t
    clock_gettime(CLOCK_MONOTONIC, &t)
    return t.tv_sec * 1_000_000_000LL + t.tv_nsec


cdef enum _Kind:
    _FUSED, _PROBA, _DECISION

#: how OneCall gets a class and its confidence from the model (see OneCall)
FUSED, PROBA, DECISION = _FUSED, _PROBA, _DECISION


cdef inline unsigned long long _thread_id() noexcept:
    """The running thread's state id: unique in the process, never reused (unlike the OS's
    thread ids), from a C call."""
    return PyThreadState_GetID(PyThreadState_Get())


cdef class LastIds:
    """The ids of each thread's last prediction
    (:attr:`~leanml.monitor.MonitoredEstimator.last_prediction_ids`). The first thread that
    sets them (the owner: most programs predict from one thread) keeps them in a field of
    this object, one id without the list it is read as (:meth:`get` makes it); every other
    thread in a ``threading.local``. A ``threading.local`` write is a dictionary lookup of
    the thread's storage and a store in it, several hundred nanoseconds of a single-text
    prediction on the cold caches a model leaves; the field is a pointer store. A thread
    that never set them reads ``[]``."""

    cdef unsigned long long _owner  # the owner's thread-state id; 0 until the first set
    cdef object _ids  # the owner's: a list of ids, or one id (a str)
    cdef object _local

    def __cinit__(self):
        self._owner = 0
        self._ids = []
        self._local = threading.local()

    cdef int _set(self, ids) except -1:
        cdef unsigned long long me = _thread_id()
        if self._owner == 0:
            self._owner = me
        if me == self._owner:
            self._ids = ids
        else:
            self._local.ids = [ids] if type(ids) is str else ids
        return 0

    def set(self, list ids):
        """This thread's last prediction ids are ``ids``."""
        self._set(ids)

    def get(self):
        """This thread's last prediction ids (``[]`` before its first prediction)."""
        if _thread_id() == self._owner:
            ids = self._ids
            return [ids] if type(ids) is str else ids
        return getattr(self._local, "ids", [])


cdef class OneCall:
    """The monitored wrapper's path for one input (:class:`leanml.monitor.MonitoredEstimator`):
    ``predict([x])`` and ``predict_with_ids([x])`` time the model, take the class and its
    confidence, issue the id (:meth:`IssueCore.issue_one`), record it
    (:meth:`Recorder.record`, with ``x`` when it is a ``str`` and ``inputs`` is true) and
    answer ``labels[k : k + 1]``, in C from the call to the answer. ``model`` is, by ``kind``:

    * ``FUSED``: a compact text model's ``predict_fused_one(text)`` -> (class index,
      confidence, tokens, known tokens), for a list of one ``str``;
    * ``PROBA``: ``predict_proba``, for a list of one item: the class is the row's argmax
      (numpy's: the first of equal maxima), its probability the confidence;
    * ``DECISION``: ``decision_function`` (no ``predict_proba``), the confidence as
      :func:`leanml._predict.scores_to_proba` makes it (softmax; sigmoid for one score).

    Anything else goes to ``fallback`` (``fallback_ids`` for ``predict_with_ids``): other
    inputs, a model answering other than one row, an ``AttributeError`` from
    ``predict_proba`` (a model that has the name and refuses). One call in ``sample_every``
    (a power of two) times the ids and record and hands the nanoseconds to ``note``. A
    failing model calls ``error(1)`` and raises."""

    cdef object _model, _fallback, _fallback_ids, _labels, _note, _error
    cdef LastIds _last
    cdef int _kind
    cdef list _names
    cdef IssueCore _gt
    cdef Recorder _rec
    cdef bint _inputs
    cdef unsigned long long _calls, _mask

    def __init__(
        self, int kind, model, labels, IssueCore gt, Recorder rec, bint inputs, LastIds last,
        note, error, unsigned long long sample_every, fallback, fallback_ids,
    ):
        self._kind, self._model, self._labels, self._gt, self._rec, self._inputs = (
            kind, model, labels, gt, rec, inputs
        )
        self._names = labels.tolist()  # the class as a Python object, as record_batch's
        self._last, self._note, self._error = last, note, error
        self._calls, self._mask = 0, sample_every - 1
        self._fallback, self._fallback_ids = fallback, fallback_ids

    cdef bint _fits(self, X):
        if type(X) is not list or len(<list>X) != 1:
            return False
        return self._kind != _FUSED or type((<list>X)[0]) is str

    cdef object _one(self, list X):
        """The label array of ``X`` (one input), its id in ``last``; None when the
        model's answer is not one row of its classes (the caller falls back)."""
        cdef long long t0 = _now_ns(), t1
        cdef object tokens = -1, known = 0
        cdef Py_ssize_t k
        cdef double conf
        try:
            if self._kind == _FUSED:
                k, conf, tokens, known = self._model(X[0])
            else:
                out = _top_of(self._model(X), self._kind == _DECISION)
                if out is None:
                    return None
                k, conf = out
        except AttributeError:
            if self._kind == _PROBA:
                return None
            self._error(1)
            raise
        except BaseException:
            self._error(1)
            raise
        if not 0 <= k < len(self._names):  # not one of the classes: the Python path says so
            return None
        cdef double dt = (_now_ns() - t0) * 1e-9
        self._calls += 1
        cdef bint timed = (self._calls & self._mask) == 0
        if timed:
            t1 = _now_ns()
        pid = self._gt._issue_one(0, k, conf)
        x = X[0]
        self._rec._record(
            pid,
            self._names[k],
            conf,
            dt,
            x if self._inputs and type(x) is str else None,
            tokens,
            known,
        )
        self._last._set(pid)
        if timed:
            self._note(_now_ns() - t1)
        self._rec._after()  # a due flusher step, outside the timed record
        return self._labels[k : k + 1]

    def predict(self, X):
        if self._fits(X):
            labels = self._one(X)
            if labels is not None:
                return labels
        return self._fallback(X)

    def predict_with_ids(self, X):
        if self._fits(X):
            labels = self._one(X)
            if labels is not None:
                return labels, self._last.get()
        return self._fallback_ids(X)


cdef object _top_of(out, bint scores):
    """(class index, confidence) of a model's answer for one input: a (1, k) array of
    probabilities, or of scores (``scores``: softmax), or one score (sigmoid); None for any
    other answer."""
    cdef const double[:, :] rows
    cdef double p
    if type(out) is not np.ndarray:
        return None
    if scores and out.ndim == 1 and out.shape[0] == 1:  # one binary margin
        p = 1.0 / (1.0 + exp(-<double>out[0]))
        return (1, p) if p > 1.0 - p else (0, 1.0 - p)
    if out.ndim != 2 or out.shape[0] != 1 or out.shape[1] == 0:
        return None
    if scores:
        return top_softmax(np.ascontiguousarray(out[0], dtype=np.float64))
    rows = out if out.dtype == np.float64 else out.astype(np.float64)
    cdef Py_ssize_t top = _argmax(rows[0])
    return top, rows[0, top]


# -- redaction (leanml.monitor._redact): where the patterns must look, in one pass -------------

cdef inline bint _space(Py_UCS4 c) noexcept:
    """The ASCII whitespace ``_redact`` splits stretches at: space, \\t \\n \\r \\f \\v."""
    return c == 32 or 9 <= c <= 13


ctypedef fused _char:
    Py_UCS1
    Py_UCS2
    Py_UCS4


cdef struct _Spans:
    # spans [lo, hi) found in a text, in order, each with a tag (which mask replaces it)
    Py_ssize_t* v  # (lo, hi, tag) triples
    Py_ssize_t n  # spans held
    Py_ssize_t cap  # room, in spans


cdef inline void _spans_init(_Spans* s) noexcept:
    s.v, s.n, s.cap = NULL, 0, 0


cdef int _spans_add(_Spans* s, Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t tag) except -1:
    cdef Py_ssize_t cap
    cdef Py_ssize_t* grown
    if s.n == s.cap:
        cap = 16 if s.cap == 0 else 2 * s.cap
        grown = <Py_ssize_t*>realloc(s.v, 3 * cap * sizeof(Py_ssize_t))
        if grown == NULL:
            raise MemoryError()
        s.v, s.cap = grown, cap
    s.v[3 * s.n], s.v[3 * s.n + 1], s.v[3 * s.n + 2] = lo, hi, tag
    s.n += 1
    return 0


cdef list _spans_list(_Spans* s, bint tags):
    """The spans as ``(lo, hi)`` tuples (``tags``: ``(lo, hi, tag)``)."""
    cdef Py_ssize_t k
    if tags:
        return [(s.v[3 * k], s.v[3 * k + 1], s.v[3 * k + 2]) for k in range(s.n)]
    return [(s.v[3 * k], s.v[3 * k + 1]) for k in range(s.n)]


def mark_spans(str text, bint urls):
    """The stretches ``[lo, hi)`` between ASCII whitespace that hold an ``@`` (``urls``
    false) or a ``://`` / ``www.`` (``urls`` true), in order."""
    cdef _Spans s
    _spans_init(&s)
    try:
        _stretches(PyUnicode_DATA(text), PyUnicode_KIND(text), PyUnicode_GET_LENGTH(text),
                   urls, &s)
        return _spans_list(&s, False)
    finally:
        free(s.v)


cdef int _stretches(const void* t, int kind, Py_ssize_t n, bint urls, _Spans* out) except -1:
    if kind == 1:  # Latin-1: find the marks at memchr speed
        return _mark_spans1(<const Py_UCS1*>t, n, urls, out)
    if kind == 2:
        return _mark_spans_wide(<const Py_UCS2*>t, n, urls, out)
    return _mark_spans_wide(<const Py_UCS4*>t, n, urls, out)


cdef int _mark_spans_wide(const _char* t, Py_ssize_t n, bint urls, _Spans* out) except -1:
    """:func:`mark_spans` of a two- or four-byte text: each mark found by a scan, then its
    stretch's ends."""
    cdef Py_ssize_t i = 0, m
    while True:
        m = i
        if urls:
            while m < n and not (
                (t[m] == 58 and m + 2 < n and t[m + 1] == 47 and t[m + 2] == 47)
                or (t[m] == 119 and m + 3 < n and t[m + 1] == 119 and t[m + 2] == 119
                    and t[m + 3] == 46)
            ):
                m += 1
        else:
            while m < n and t[m] != 64:
                m += 1
        if m >= n:
            return 0
        i = _stretch(t, i, m, n, out)


cdef inline Py_ssize_t _stretch(const _char* t, Py_ssize_t i, Py_ssize_t m, Py_ssize_t n,
                                _Spans* out) except -1:
    """Add the stretch between ASCII whitespace around the mark at ``m`` (not before ``i``)
    to ``out``; its end."""
    cdef Py_ssize_t lo = m, hi = m
    while lo > i and not _space(t[lo - 1]):
        lo -= 1
    while hi < n and not _space(t[hi]):
        hi += 1
    _spans_add(out, lo, hi, 0)
    return hi


cdef Py_ssize_t _find(const Py_UCS1* t, Py_ssize_t i, Py_ssize_t n, const char* what,
                      Py_ssize_t size) noexcept:
    """The first ``what`` in ``t[i:n]``, else ``n`` (one byte: memchr; more: SSE2)."""
    cdef const void* p
    if size > 1:
        return leanml_find(t, i, n, what, size) if i < n else n
    p = memchr(t + i, what[0], n - i) if i < n else NULL
    return n if p == NULL else <const Py_UCS1*>p - t


cdef int _mark_spans1(const Py_UCS1* t, Py_ssize_t n, bint urls, _Spans* out) except -1:
    """:func:`mark_spans` of a one-byte text: each mark found, then its stretch's ends."""
    cdef Py_ssize_t i = 0, m, a, b
    a = _find(t, 0, n, b"://", 3) if urls else _find(t, 0, n, b"@", 1)
    b = _find(t, 0, n, b"www.", 4) if urls else n
    while True:
        m = a if a < b else b
        if m >= n:
            return 0
        i = _stretch(t, i, m, n, out)
        if a < i:
            a = _find(t, i, n, b"://", 3) if urls else _find(t, i, n, b"@", 1)
        if b < i:
            b = _find(t, i, n, b"www.", 4)


cdef inline bint _word(Py_UCS4 c) noexcept:
    """The patterns' ``\\w``: a letter or digit of any script, or ``_``."""
    if c < 128:
        return 48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c == 95
    return Py_UNICODE_ISALNUM(c)


cdef inline bint _local(Py_UCS4 c) noexcept:  # [\\w.+-]
    return _word(c) or c == 46 or c == 43 or c == 45


cdef inline bint _label(Py_UCS4 c) noexcept:  # [\\w-]
    return _word(c) or c == 45


cdef inline bint _scheme(Py_UCS4 c) noexcept:  # [a-zA-Z0-9+.-]
    return 48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c == 43 or c == 46 or c == 45


cdef inline bint _url_char(Py_UCS4 c) noexcept:  # [^\\s<>"']
    return not (Py_UNICODE_ISSPACE(c) or c == 60 or c == 62 or c == 34 or c == 39)


cdef inline bint _url_end(Py_UCS4 c) noexcept:  # [^\\s<>"'.,;:!?)]
    return _url_char(c) and not (
        c == 46 or c == 44 or c == 59 or c == 58 or c == 33 or c == 63 or c == 41
    )


cdef int _emails(const _char* t, Py_ssize_t p, Py_ssize_t hi, _Spans* out) except -1:
    """The matches of ``[\\w.+-]+@[\\w-]+(?:\\.[\\w-]+)+`` in ``t[p:hi]``, left to right as
    ``finditer`` finds them. No part of the pattern can backtrack into another (``@`` and
    ``.`` end the runs before them), so each start either matches the longest such text or,
    with every start of the same ``[\\w.+-]`` run, fails."""
    cdef Py_ssize_t e, d, end, labels
    while p < hi:
        if not _local(t[p]):
            p += 1
            continue
        e = p
        while e < hi and _local(t[e]):
            e += 1
        if e < hi and t[e] == 64:  # "@"
            d = end = e + 1
            while end < hi and _label(t[end]):
                end += 1
            labels = 0
            if end > d:
                while end + 1 < hi and t[end] == 46 and _label(t[end + 1]):
                    end += 1
                    while end < hi and _label(t[end]):
                        end += 1
                    labels += 1
            if labels:
                _spans_add(out, p, end, _MASK_EMAIL)
                p = end
                continue
        p = e
    return 0


cdef Py_ssize_t _url_tail(const _char* t, Py_ssize_t q, Py_ssize_t hi) noexcept:
    """End of ``[^\\s<>"']*[^\\s<>"'.,;:!?)]`` from ``q`` (the run, backed off to its last
    character that may end a URL), or -1."""
    cdef Py_ssize_t r = q
    while r < hi and _url_char(t[r]):
        r += 1
    while r > q and not _url_end(t[r - 1]):
        r -= 1
    return r if r > q else -1


cdef int _urls(const _char* t, Py_ssize_t lo, Py_ssize_t hi, _Spans* out) except -1:
    """The matches of the URL pattern (``leanml.monitor._redact._URL``) in ``t[lo:hi]``, as
    ``finditer`` finds them in that substring: at each start, ``scheme://`` then ``www.``,
    each with the longest tail that ends on a character a URL may end with."""
    cdef Py_ssize_t p = lo, q, m
    cdef Py_UCS4 c
    while p < hi:
        c = t[p]
        m = -1
        if _word(c) and (p == lo or not _word(t[p - 1])):  # \\b before a word character
            if 65 <= c <= 90 or 97 <= c <= 122:
                q = p + 1
                while q < hi and _scheme(t[q]):
                    q += 1
                if q + 2 < hi and t[q] == 58 and t[q + 1] == 47 and t[q + 2] == 47:
                    m = _url_tail(t, q + 3, hi)
            if m < 0 and c == 119 and p + 3 < hi and t[p + 1] == 119 and t[p + 2] == 119 \
                    and t[p + 3] == 46:
                m = _url_tail(t, p + 4, hi)
        if m >= 0:
            _spans_add(out, p, m, _MASK_URL)
            p = m
        else:
            p += 1
    return 0


def sub_marks(str text, bint urls):
    """``_EMAIL.sub("<email>", text)`` (``urls`` false) or ``_URL.sub("<url>", text)`` of
    :mod:`leanml.monitor._redact`, the pattern matched in C over the stretches of
    :func:`mark_spans` only (a match holds a mark and no ASCII whitespace)."""
    return _redact_steps(text, _STEP_URLS if urls else _STEP_EMAILS, 1)


cdef inline bint _digit(Py_UCS4 c) noexcept:  # \\d: a decimal digit of any script
    return 48 <= c <= 57 if c < 128 else Py_UNICODE_ISDECIMAL(c)


cdef inline bint _separator(Py_UCS4 c) noexcept:  # [\\s().-]
    return c == 40 or c == 41 or c == 46 or c == 45 or Py_UNICODE_ISSPACE(c)


cdef Py_ssize_t _phone_end(const _char* t, Py_ssize_t p, Py_ssize_t n) noexcept:
    """End of the match of ``(?<![\\w])\\+?\\(?\\d(?:[\\s().-]{0,2}\\d){6,}(?![\\w])``
    at ``p``, or -1. Each digit after the first is reached from the one before over at most
    two separators in one way only, so the digits form one chain; the match ends after its
    last digit, at the 7th or later, that is not followed by a word character (the longest
    the pattern's backtracking finds)."""
    cdef Py_ssize_t q = p, d, e, s, digits = 1, end = -1
    if p > 0 and _word(t[p - 1]):
        return -1
    if q < n and t[q] == 43:  # "+"
        q += 1
    if q < n and t[q] == 40:  # "("
        q += 1
    if q >= n or not _digit(t[q]):
        return -1
    d = q
    while True:
        if digits >= 7 and (d + 1 >= n or not _word(t[d + 1])):
            end = d + 1
        e, s = d + 1, 0
        while s < 2 and e < n and _separator(t[e]):
            e += 1
            s += 1
        if e < n and _digit(t[e]):
            d = e
            digits += 1
        else:
            return end


cdef int _digit_masks(const _char* t, Py_ssize_t n, _Spans* out) except -1:
    """``(start, end, is_phone)`` of the phone matches and then, between them, the runs of 5
    or more digits (``\\d{5,}``), in order."""
    cdef Py_ssize_t p = 0, end, r
    cdef Py_UCS4 c
    while p < n:
        if _char is Py_UCS1:  # skip to the next candidate 16 bytes at a time
            p = leanml_next_digit_start(t, p, n)
            if p >= n:
                return 0
        c = t[p]
        if c == 43 or c == 40 or _digit(c):
            end = _phone_end(t, p, n)
            if end >= 0:
                _spans_add(out, p, end, _MASK_PHONE)
                p = end
                continue
            if _digit(c):  # the digit run from here: no phone starts inside it (a digit is a
                r = p + 1  # word character before any later start)
                while r < n and _digit(t[r]):
                    r += 1
                if r - p >= 5:
                    _spans_add(out, p, r, _MASK_NUMBER)
                p = r
                continue
        p += 1
    return 0


def mask_digits(str text):
    """``_DIGITS.sub("<number>", _PHONE.sub("<phone>", text))`` of
    :mod:`leanml.monitor._redact`, matched in C in one pass."""
    return _redact_steps(text, _STEP_DIGITS, 1)


# -- redaction: the steps, each writing the text with its matches masked to a C buffer ---------

cdef extern from *:
    """
    static const char* const leanml_masks[4] = {"<email>", "<url>", "<phone>", "<number>"};
    static const Py_ssize_t leanml_mask_len[4] = {7, 5, 7, 8};
    """
    const char* leanml_masks[4]
    const Py_ssize_t leanml_mask_len[4]


# a span's tag: the mask that replaces it (leanml_masks)
cdef enum:
    _MASK_EMAIL = 0
    _MASK_URL = 1
    _MASK_PHONE = 2
    _MASK_NUMBER = 3

# the redaction's steps, in the order it applies them
cdef enum:
    _STEP_EMAILS = 0
    _STEP_URLS = 1
    _STEP_DIGITS = 2


cdef object _redact_steps(str text, int first, int count):
    """``text`` after ``count`` redaction steps from ``first`` (:data:`_STEP_EMAILS`, then
    URLs, then digits), each over the previous step's output as ``re.sub`` would run them
    in turn: the text itself when no step finds anything. The steps write to two C buffers
    in turn (no string per step, no tuple per match); the result becomes one ``str`` at the
    end (of the narrowest kind that holds it, as every ``str`` must be)."""
    cdef int kind = PyUnicode_KIND(text), step, w = 0
    cdef const void* cur = PyUnicode_DATA(text)
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(text)
    cdef bint changed = False
    cdef void* bufs[2]
    cdef _Spans found
    bufs[0] = bufs[1] = NULL
    _spans_init(&found)
    try:
        for step in range(first, first + count):
            found.n = 0
            _step_spans(cur, kind, n, step, &found)
            if found.n:
                bufs[w] = _masked(cur, kind, n, &found, bufs[w], &n)
                cur = bufs[w]
                w ^= 1
                changed = True
        if not changed:
            return text
        return PyUnicode_FromKindAndData(kind, cur, n)
    finally:
        free(found.v)
        free(bufs[0])
        free(bufs[1])


cdef int _step_spans(const void* t, int kind, Py_ssize_t n, int step, _Spans* out) except -1:
    if kind == 1:
        return _step_spans_k(<const Py_UCS1*>t, n, step, out)
    if kind == 2:
        return _step_spans_k(<const Py_UCS2*>t, n, step, out)
    return _step_spans_k(<const Py_UCS4*>t, n, step, out)


cdef int _step_spans_k(const _char* t, Py_ssize_t n, int step, _Spans* out) except -1:
    """The matches of one step in ``t[:n]``: e-mails and URLs over the stretches around
    their marks, phone numbers and digit runs over the whole text."""
    cdef _Spans st
    cdef Py_ssize_t k
    cdef bint urls = step == _STEP_URLS
    if step == _STEP_DIGITS:
        return _digit_masks(t, n, out)
    _spans_init(&st)
    try:
        if _char is Py_UCS1:
            _mark_spans1(t, n, urls, &st)
        else:
            _mark_spans_wide(t, n, urls, &st)
        for k in range(st.n):
            if urls:
                _urls(t, st.v[3 * k], st.v[3 * k + 1], out)
            else:
                _emails(t, st.v[3 * k], st.v[3 * k + 1], out)
    finally:
        free(st.v)
    return 0


cdef void* _masked(const void* t, int kind, Py_ssize_t n, _Spans* spans, void* buf,
                   Py_ssize_t* size) except NULL:
    """``t[:n]`` with each span replaced by its mask, written to ``buf`` (grown with
    realloc): the buffer, its length in ``size``."""
    cdef Py_ssize_t k, m = n
    for k in range(spans.n):
        m += leanml_mask_len[spans.v[3 * k + 2]] - (spans.v[3 * k + 1] - spans.v[3 * k])
    cdef void* out = realloc(buf, (m if m > 0 else 1) * kind)
    if out == NULL:
        raise MemoryError()
    if kind == 1:
        _write_masked(<const Py_UCS1*>t, n, spans, <Py_UCS1*>out)
    elif kind == 2:
        _write_masked(<const Py_UCS2*>t, n, spans, <Py_UCS2*>out)
    else:
        _write_masked(<const Py_UCS4*>t, n, spans, <Py_UCS4*>out)
    size[0] = m
    return out


cdef void _write_masked(const _char* t, Py_ssize_t n, _Spans* spans, _char* out) noexcept:
    cdef Py_ssize_t k, j, lo, at = 0, o = 0, m
    cdef const char* mask
    for k in range(spans.n):
        lo = spans.v[3 * k]
        memcpy(out + o, t + at, (lo - at) * sizeof(_char))
        o += lo - at
        mask = leanml_masks[spans.v[3 * k + 2]]
        m = leanml_mask_len[spans.v[3 * k + 2]]
        for j in range(m):
            out[o + j] = <unsigned char>mask[j]
        o += m
        at = spans.v[3 * k + 1]
    memcpy(out + o, t + at, (n - at) * sizeof(_char))


cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* CRC-32 as zlib's crc32() (reflected polynomial 0xEDB88320), slicing by 8. */
    static uint32_t leanml_crc_tab[8][256];
    static void leanml_crc_init(void) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            leanml_crc_tab[0][i] = c;
        }
        for (uint32_t i = 0; i < 256; i++)
            for (int t = 1; t < 8; t++)
                leanml_crc_tab[t][i] = (leanml_crc_tab[t - 1][i] >> 8)
                                       ^ leanml_crc_tab[0][leanml_crc_tab[t - 1][i] & 0xFF];
    }
    static uint32_t leanml_crc32(const unsigned char* p, size_t n) {
        uint32_t c = 0xFFFFFFFFu;
        while (n >= 8) {
            uint32_t a, b;
            memcpy(&a, p, 4);
            memcpy(&b, p + 4, 4);
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
            a = __builtin_bswap32(a);
            b = __builtin_bswap32(b);
    #endif
            a ^= c;
            c = leanml_crc_tab[7][a & 0xFF] ^ leanml_crc_tab[6][(a >> 8) & 0xFF]
                ^ leanml_crc_tab[5][(a >> 16) & 0xFF] ^ leanml_crc_tab[4][a >> 24]
                ^ leanml_crc_tab[3][b & 0xFF] ^ leanml_crc_tab[2][(b >> 8) & 0xFF]
                ^ leanml_crc_tab[1][(b >> 16) & 0xFF] ^ leanml_crc_tab[0][b >> 24];
            p += 8;
            n -= 8;
        }
        while (n--) c = leanml_crc_tab[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
        return c ^ 0xFFFFFFFFu;
    }

    /* murmur3's 32-bit finalizer */
    static uint32_t leanml_fmix32(uint32_t h) {
        h ^= h >> 16;
        h *= 0x85EBCA6Bu;
        h ^= h >> 13;
        h *= 0xC2B2AE35u;
        return h ^ (h >> 16);
    }

    /* SHA-256 (FIPS 180-4) of n bytes, written as 64 lowercase hex digits into out. */
    static const uint32_t leanml_sha_k[64] = {
        0x428a2f98,0x71374491,0xb5c0fbcf,0xe9b5dba5,0x3956c25b,0x59f111f1,0x923f82a4,0xab1c5ed5,
        0xd807aa98,0x12835b01,0x243185be,0x550c7dc3,0x72be5d74,0x80deb1fe,0x9bdc06a7,0xc19bf174,
        0xe49b69c1,0xefbe4786,0x0fc19dc6,0x240ca1cc,0x2de92c6f,0x4a7484aa,0x5cb0a9dc,0x76f988da,
        0x983e5152,0xa831c66d,0xb00327c8,0xbf597fc7,0xc6e00bf3,0xd5a79147,0x06ca6351,0x14292967,
        0x27b70a85,0x2e1b2138,0x4d2c6dfc,0x53380d13,0x650a7354,0x766a0abb,0x81c2c92e,0x92722c85,
        0xa2bfe8a1,0xa81a664b,0xc24b8b70,0xc76c51a3,0xd192e819,0xd6990624,0xf40e3585,0x106aa070,
        0x19a4c116,0x1e376c08,0x2748774c,0x34b0bcb5,0x391c0cb3,0x4ed8aa4a,0x5b9cca4f,0x682e6ff3,
        0x748f82ee,0x78a5636f,0x84c87814,0x8cc70208,0x90befffa,0xa4506ceb,0xbef9a3f7,0xc67178f2};
    #define LEANML_ROR(x, r) (((x) >> (r)) | ((x) << (32 - (r))))
    static void leanml_sha_block(uint32_t h[8], const unsigned char* b) {
        uint32_t w[64];
        for (int i = 0; i < 16; i++)
            w[i] = ((uint32_t)b[4*i] << 24) | ((uint32_t)b[4*i+1] << 16)
                   | ((uint32_t)b[4*i+2] << 8) | (uint32_t)b[4*i+3];
        for (int i = 16; i < 64; i++) {
            uint32_t s0 = LEANML_ROR(w[i-15], 7) ^ LEANML_ROR(w[i-15], 18) ^ (w[i-15] >> 3);
            uint32_t s1 = LEANML_ROR(w[i-2], 17) ^ LEANML_ROR(w[i-2], 19) ^ (w[i-2] >> 10);
            w[i] = w[i-16] + s0 + w[i-7] + s1;
        }
        uint32_t a = h[0], bb = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
        for (int i = 0; i < 64; i++) {
            uint32_t t1 = hh + (LEANML_ROR(e, 6) ^ LEANML_ROR(e, 11) ^ LEANML_ROR(e, 25))
                          + ((e & f) ^ (~e & g)) + leanml_sha_k[i] + w[i];
            uint32_t t2 = (LEANML_ROR(a, 2) ^ LEANML_ROR(a, 13) ^ LEANML_ROR(a, 22))
                          + ((a & bb) ^ (a & c) ^ (bb & c));
            hh = g; g = f; f = e; e = d + t1; d = c; c = bb; bb = a; a = t1 + t2;
        }
        h[0] += a; h[1] += bb; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
    }
    static void leanml_sha_blocks_plain(uint32_t h[8], const unsigned char* p, size_t blocks) {
        for (size_t i = 0; i < blocks; i++) leanml_sha_block(h, p + 64 * i);
    }

    #if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    #include <cpuid.h>
    #include <immintrin.h>
    #define LEANML_SHA_NI 1
    /* The same blocks with the x86 SHA extensions (Intel's sha256rnds2 / sha256msg1 /
       sha256msg2, as in Intel's white paper "New Instructions Supporting the Secure Hash
       Algorithm on Intel Architecture Processors"): four rounds per step on the state held as
       ABEF and CDGH. Used only where CPUID reports them (leanml_sha_ni_supported). */
    #define LEANML_NI_STEP(Mc, Mn, Mp, g, w2, w1)                                           \
        do {                                                                            \
            if ((g) < 4) Mc = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i*)(p + 16 * (g))), \
                                               mask);                                   \
            msg = _mm_add_epi32(Mc, _mm_loadu_si128((const __m128i*)&leanml_sha_k[4 * (g)])); \
            s1 = _mm_sha256rnds2_epu32(s1, s0, msg);                                     \
            if (w2) {                                                                   \
                Mn = _mm_add_epi32(Mn, _mm_alignr_epi8(Mc, Mp, 4));                     \
                Mn = _mm_sha256msg2_epu32(Mn, Mc);                                       \
            }                                                                           \
            s0 = _mm_sha256rnds2_epu32(s0, s1, _mm_shuffle_epi32(msg, 0x0E));            \
            if (w1) Mp = _mm_sha256msg1_epu32(Mp, Mc);                                   \
        } while (0)
    __attribute__((target("sha,sse4.1,ssse3")))
    static void leanml_sha_blocks_ni(uint32_t h[8], const unsigned char* p, size_t blocks) {
        const __m128i mask = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
        __m128i t = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i*)&h[0]), 0xB1); /* CDAB */
        __m128i s1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i*)&h[4]), 0x1B); /* EFGH */
        __m128i s0 = _mm_alignr_epi8(t, s1, 8);                                      /* ABEF */
        s1 = _mm_blend_epi16(s1, t, 0xF0);                                           /* CDGH */
        for (; blocks; blocks--, p += 64) {
            __m128i abef = s0, cdgh = s1, msg, m0 = s0, m1 = s0, m2 = s0, m3 = s0;
            LEANML_NI_STEP(m0, m1, m3, 0, 0, 0);
            LEANML_NI_STEP(m1, m2, m0, 1, 0, 1);
            LEANML_NI_STEP(m2, m3, m1, 2, 0, 1);
            LEANML_NI_STEP(m3, m0, m2, 3, 1, 1);
            LEANML_NI_STEP(m0, m1, m3, 4, 1, 1);
            LEANML_NI_STEP(m1, m2, m0, 5, 1, 1);
            LEANML_NI_STEP(m2, m3, m1, 6, 1, 1);
            LEANML_NI_STEP(m3, m0, m2, 7, 1, 1);
            LEANML_NI_STEP(m0, m1, m3, 8, 1, 1);
            LEANML_NI_STEP(m1, m2, m0, 9, 1, 1);
            LEANML_NI_STEP(m2, m3, m1, 10, 1, 1);
            LEANML_NI_STEP(m3, m0, m2, 11, 1, 1);
            LEANML_NI_STEP(m0, m1, m3, 12, 1, 1);
            LEANML_NI_STEP(m1, m2, m0, 13, 1, 0);
            LEANML_NI_STEP(m2, m3, m1, 14, 1, 0);
            LEANML_NI_STEP(m3, m0, m2, 15, 0, 0);
            s0 = _mm_add_epi32(s0, abef);
            s1 = _mm_add_epi32(s1, cdgh);
        }
        t = _mm_shuffle_epi32(s0, 0x1B);                                             /* FEBA */
        s1 = _mm_shuffle_epi32(s1, 0xB1);                                            /* DCHG */
        _mm_storeu_si128((__m128i*)&h[0], _mm_blend_epi16(t, s1, 0xF0));             /* DCBA */
        _mm_storeu_si128((__m128i*)&h[4], _mm_alignr_epi8(s1, t, 8));                /* HGFE */
    }
    static int leanml_sha_ni_supported(void) {
        unsigned int a, b, c, d;
        if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 19)) || !(c & (1u << 9))) return 0;
        if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
        return (b >> 29) & 1;  /* SSE4.1, SSSE3 and SHA */
    }
    #else
    static void leanml_sha_blocks_ni(uint32_t h[8], const unsigned char* p, size_t blocks) {
        leanml_sha_blocks_plain(h, p, blocks);
    }
    static int leanml_sha_ni_supported(void) { return 0; }
    #endif

    /* SHA-256 of n bytes as 64 lowercase hex digits, with the SHA instructions when ni. */
    static void leanml_sha256_hex(const unsigned char* p, size_t n, char out[64], int ni) {
        uint32_t h[8] = {0x6a09e667,0xbb67ae85,0x3c6ef372,0xa54ff53a,
                         0x510e527f,0x9b05688c,0x1f83d9ab,0x5be0cd19};
        void (*blocks)(uint32_t*, const unsigned char*, size_t) =
            ni ? leanml_sha_blocks_ni : leanml_sha_blocks_plain;
        unsigned char tail[128];
        size_t full = n & ~(size_t)63, rest = n - full, len;
        blocks(h, p, full / 64);
        memset(tail, 0, sizeof tail);
        memcpy(tail, p + full, rest);
        tail[rest] = 0x80;
        len = rest + 1 + 8 <= 64 ? 64 : 128;
        uint64_t bits = (uint64_t)n * 8;
        for (int i = 0; i < 8; i++) tail[len - 1 - i] = (unsigned char)(bits >> (8 * i));
        blocks(h, tail, len / 64);
        static const char hex[] = "0123456789abcdef";
        for (int i = 0; i < 8; i++)
            for (int k = 0; k < 8; k++) out[8*i + k] = hex[(h[i] >> (28 - 4*k)) & 15];
    }
    """
    void leanml_crc_init()
    unsigned int leanml_crc32(const unsigned char* p, size_t n) nogil
    unsigned int leanml_fmix32(unsigned int h) nogil
    void leanml_sha256_hex(const unsigned char* p, size_t n, char* out, int ni) nogil
    int leanml_sha_ni_supported()


cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object o, Py_ssize_t* size) except NULL


leanml_crc_init()


cdef inline const char* _utf8(str s, Py_ssize_t* size) except NULL:
    """The UTF-8 bytes of ``s`` (an ASCII string's own characters, read directly)."""
    if PyUnicode_IS_COMPACT_ASCII(s):
        size[0] = PyUnicode_GET_LENGTH(s)
        return <const char*>PyUnicode_DATA(s)
    return PyUnicode_AsUTF8AndSize(s, size)


cdef inline double _str_sample_hash(str s) except -1:
    """The sampling hash of a ``str`` id (:func:`leanml._ids.sample_hash`): murmur3's
    finalizer of the CRC-32 of its UTF-8 form."""
    cdef Py_ssize_t size
    cdef const char* data = _utf8(s, &size)
    return <double>leanml_fmix32(leanml_crc32(<const unsigned char*>data, size))


def sample_hashes_of_str(list ids):
    """The sampling hashes (:func:`leanml._ids.sample_hashes`) of a list of ``str`` ids, as a
    uint64 array; None when an item is not a ``str`` (the caller's Python path hashes those)."""
    cdef Py_ssize_t i, n = len(ids)
    out = np.empty(n, dtype=np.uint64)
    cdef unsigned long long[::1] o = out
    for i in range(n):
        x = ids[i]
        if type(x) is not str:
            return None
        o[i] = <unsigned long long>_str_sample_hash(x)
    return out


cdef class Sampler:
    """Which predictions the flusher keeps in detail (``MonitorConfig.sampling_rate`` and
    ``sample_below_confidence``): those whose id's sampling hash
    (:func:`leanml._ids.sample_hash`; CRC-32 here for a ``str``, ``hash_of(id)`` for any other
    id) is below ``rate * 2**32``, deterministic in the id, and those less confident than
    ``below`` (None: off)."""

    cdef int mode  # 0: none, 1: every prediction, 2: by the hash
    cdef double cut
    cdef bint low_on
    cdef double below
    cdef object hash_of

    def __init__(self, double rate, below, hash_of):
        self.mode = 1 if rate >= 1.0 else 0 if rate <= 0.0 else 2
        self.cut = rate * 4294967296.0
        self.low_on = below is not None
        self.below = float(below) if below is not None else 0.0
        self.hash_of = hash_of

    @property
    def low_on(self):
        return self.low_on

    cdef inline int keep(self, pid, double conf) except -1:
        """0: not kept; 1: kept for its id; 2: kept for its low confidence only."""
        cdef bint by_id
        if self.mode == 2:
            if type(pid) is str:
                by_id = _str_sample_hash(pid) < self.cut
            else:
                by_id = <double>int(self.hash_of(pid)) < self.cut
        else:
            by_id = self.mode == 1
        if by_id:
            return 1
        return 2 if self.low_on and conf < self.below else 0


cdef class _Picker:
    """The kept predictions of one chunk, gathered while it is taken: their positions, whether
    each was kept for its low confidence only, their ids and inputs (the rest of the chunk's
    ids and inputs are never copied)."""

    cdef Sampler s
    cdef object at_a, low_a
    cdef long long[::1] at
    cdef unsigned char[::1] low
    cdef Py_ssize_t m
    cdef list ids, inputs

    def __cinit__(self, Sampler s, Py_ssize_t capacity):
        self.s = s
        self.at_a = np.empty(capacity, dtype=np.int64)
        self.low_a = np.zeros(capacity, dtype=np.uint8)
        self.at, self.low = self.at_a, self.low_a
        self.m = 0
        self.ids, self.inputs = [], []

    cdef inline int offer(self, Py_ssize_t pos, pid, double conf, inp) except -1:
        cdef int why = self.s.keep(pid, conf)
        if why:
            self.at[self.m] = pos
            self.low[self.m] = why == 2
            self.m += 1
            self.ids.append(pid)
            self.inputs.append(inp)
        return 0

    cdef tuple result(self, bint any_input):
        """(positions, low-confidence-only flags or None, ids, inputs or None)."""
        low = self.low_a[: self.m].view(np.bool_) if self.s.low_on else None
        return self.at_a[: self.m], low, self.ids, self.inputs if any_input else None


cdef class _Codes:
    """The label codes of one chunk (``label_index``; -1 for a label not in it, gathered with
    its position), a 4-entry cache of the last labels seen by identity in front of the dict:
    a batch's labels are the model's class objects."""

    cdef dict index
    cdef PyObject* seen[4]
    cdef int seen_code[4]
    cdef int next_slot
    cdef list unknown_at, unknown

    def __cinit__(self, dict index):
        self.index = index
        self.next_slot = 0
        for k in range(4):
            self.seen[k] = NULL
        self.unknown_at, self.unknown = [], []

    cdef inline int code(self, Py_ssize_t pos, label) except -2:
        """The code of ``label`` (held alive by the caller for the whole take)."""
        cdef int k
        cdef PyObject* p = <PyObject*>label
        for k in range(4):
            if self.seen[k] == p:
                if self.seen_code[k] < 0:
                    self.unknown_at.append(pos)
                    self.unknown.append(label)
                return self.seen_code[k]
        got = self.index.get(label)
        k = self.next_slot
        self.next_slot = (k + 1) & 3
        self.seen[k] = p
        self.seen_code[k] = -1 if got is None else <int>got
        if got is None:
            self.unknown_at.append(pos)
            self.unknown.append(label)
        return self.seen_code[k]


#: whether this CPU has the x86 SHA extensions (then every text is hashed here, with them)
SHA_NI = bool(leanml_sha_ni_supported())
cdef int _ni = SHA_NI
#: without them, UTF-8 bytes from which hashlib (OpenSSL: 1.9 us for a 1.4 KB e-mail against
#: 5 us in plain C) beats the plain C SHA-256 and its call costs
cdef Py_ssize_t _HASHLIB_FROM = (1 << 62) if SHA_NI else 128


def sha256_hex(bytes data, bint ni):
    """The SHA-256 of ``data`` in hex as :func:`detail_fields` computes it, with the SHA
    instructions (``ni``; only where :data:`SHA_NI`) or in plain C: for tests."""
    cdef char buf[64]
    if ni and not SHA_NI:
        raise ValueError("this CPU has no SHA instructions")
    leanml_sha256_hex(<const unsigned char*>(<const char*>data), len(data), buf, ni)
    return buf[:64].decode("ascii")


cdef object _hashlib_hash(x):
    from leanml._ids import input_hash  # here: leanml._ids imports this module

    return input_hash(x)


cdef object _hash_one(x):
    """SHA-256 (64 hex digits) of one text's UTF-8 form as :func:`leanml._ids.input_hash`
    (None for None; anything else as its ``str``): here, in C (with the SHA instructions where
    the CPU has them; without them a long text goes through hashlib); a text with lone
    surrogates through ``input_hash``."""
    cdef Py_ssize_t size
    cdef const char* data
    cdef char buf[64]
    if x is None:
        return None
    if type(x) is not str:  # hashed as its str, as it is redacted
        return _hashlib_hash(str(x))
    try:
        data = _utf8(x, &size)
    except UnicodeEncodeError:  # lone surrogates: hashed as "surrogatepass" encodes them
        return _hashlib_hash(x)
    if size >= _HASHLIB_FROM:
        return _hashlib_hash(x)
    leanml_sha256_hex(<const unsigned char*>data, size, buf, _ni)
    s = PyUnicode_New(64, 127)
    memcpy(PyUnicode_DATA(s), buf, 64)
    return s


cdef object _redact_one(x):
    """:func:`leanml.monitor._redact.redact` of one text (None stays None; anything else is
    redacted as its ``str``)."""
    if x is None:
        return None
    cdef str t = x if type(x) is str else str(x)
    cdef int kind = PyUnicode_KIND(t)
    cdef void* d = PyUnicode_DATA(t)
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(t)
    if kind == 1:
        if not _latin1_may_hold_marks(<const Py_UCS1*>d, n):
            return t
    elif kind == 2:
        if not _may_hold_marks(<const Py_UCS2*>d, n):
            return t
    elif not _may_hold_marks(<const Py_UCS4*>d, n):
        return t
    # each step finds its own marks (memchr / SSE2 in a one-byte text) and returns the text
    # itself when it has none: no separate "in" test first (one more pass over the text)
    return _redact_steps(t, _STEP_EMAILS, 3)


cdef unsigned char _MARK_START[256]  # the characters a mark or digit run starts with
for _c in "@:w0123456789":
    _MARK_START[ord(_c)] = 1


cdef bint _latin1_may_hold_marks(const Py_UCS1* t, Py_ssize_t n) noexcept:
    """:func:`_may_hold_marks` of a Latin-1 text: one table read per character (no Latin-1
    character beyond ASCII is a decimal digit)."""
    cdef Py_ssize_t i
    for i in range(n):
        if _MARK_START[t[i]] and _may_hold_marks(t + i, n - i):
            return True
    return False


cdef bint _may_hold_marks(const _char* t, Py_ssize_t n) noexcept:
    """Whether a text could hold something to redact: an ``@``, ``://``, ``www.`` or a
    decimal digit (every pattern of :mod:`leanml.monitor._redact` needs one). Most short
    texts hold none and are kept as they are after this one pass."""
    cdef Py_ssize_t i
    cdef Py_UCS4 c
    for i in range(n):
        c = t[i]
        if c == 64 or _digit(c):  # "@"
            return True
        if c == 58 and i + 2 < n and t[i + 1] == 47 and t[i + 2] == 47:  # "://"
            return True
        if c == 119 and i + 3 < n and t[i + 1] == 119 and t[i + 2] == 119 and t[i + 3] == 46:
            return True  # "www."
    return False


#: what a detail row keeps of its input (MonitorConfig.store_inputs), for detail_fields
STORE_TEXT, STORE_REDACTED, STORE_HASH, STORE_NONE = 0, 1, 2, 3


def detail_fields(list ids, inputs, list at, int mode):
    """For the sampled positions ``at``: each one's id as ``str``, its input as stored
    (``mode``: :data:`STORE_TEXT` as sent, :data:`STORE_REDACTED`, :data:`STORE_HASH` or
    :data:`STORE_NONE`: None) and its input's SHA-256 (None with STORE_NONE or no input):
    one pass, each id and text read once. A position outside ``ids`` or ``inputs`` is an
    IndexError."""
    cdef Py_ssize_t k, n = len(at), i
    cdef list pids = [None] * n, stored = [None] * n, hashes = [None] * n
    cdef list texts = inputs if inputs is not None and mode != STORE_NONE else None
    cdef Py_ssize_t size = len(ids) if texts is None else min(len(ids), len(texts))
    for k in range(n):
        i = at[k]
        if not 0 <= i < size:
            raise IndexError(f"position {i} outside the {size} ids and inputs")
        pid = ids[i]
        pids[k] = pid if type(pid) is str else str(pid)
        if texts is None:
            continue
        x = texts[i]
        if x is None:
            continue
        hashes[k] = _hash_one(x)
        if mode == STORE_TEXT:
            stored[k] = x
        elif mode == STORE_REDACTED:
            stored[k] = _redact_one(x)
    return pids, stored, hashes


cdef int _copy_numbers(obj, double* out, Py_ssize_t n, str what) except -1:
    """Write the ``n`` numbers of ``obj`` (an array of float64, float32, int64 or int32 read
    through the buffer protocol, or any sequence of numbers) to ``out``; ValueError when it
    holds another count, TypeError when an item is not a number."""
    cdef Py_buffer view
    cdef Py_ssize_t i, step
    cdef const char* p
    cdef bytes fmt
    cdef char kind
    if PyObject_CheckBuffer(obj):
        PyObject_GetBuffer(obj, &view, PyBUF_STRIDES | PyBUF_FORMAT)
        try:
            if view.ndim != 1 or view.shape[0] != n:
                raise ValueError(f"{what}: {n} numbers expected, got shape {obj.shape!r}"
                                 if hasattr(obj, "shape") else f"{what}: {n} numbers expected")
            fmt = view.format if view.format != NULL else b"B"
            if len(fmt) == 2 and fmt[0] in b"@=<":
                fmt = fmt[1:]
            kind = fmt[0] if len(fmt) == 1 else 0
            p, step = <const char*>view.buf, view.strides[0]
            if kind == b"d" and view.itemsize == 8:
                for i in range(n):
                    out[i] = (<const double*>(p + i * step))[0]
                return 0
            if kind == b"f" and view.itemsize == 4:
                for i in range(n):
                    out[i] = (<const float*>(p + i * step))[0]
                return 0
            if kind in b"lq" and view.itemsize == 8:
                for i in range(n):
                    out[i] = <double>(<const long long*>(p + i * step))[0]
                return 0
            if kind == b"i" and view.itemsize == 4:
                for i in range(n):
                    out[i] = <double>(<const int*>(p + i * step))[0]
                return 0
        finally:
            PyBuffer_Release(&view)
        obj = obj.tolist() if hasattr(obj, "tolist") else list(obj)  # as Python numbers
    if not isinstance(obj, (list, tuple)):
        obj = list(obj)
    if len(obj) != n:
        raise ValueError(f"{what}: {n} numbers expected, got {len(obj)}")
    for i in range(n):
        out[i] = float(obj[i])
    return 0


def take_at(list items, const long long[::1] at):
    """``[items[i] for i in at]`` (``at`` an int64 array; IndexError outside ``items``): a
    batch's labels from the model's class list and its class indices, as shared objects
    (their hashes cached: the flusher's label lookups are cheap)."""
    cdef Py_ssize_t k, n = at.shape[0], size = len(items)
    cdef long long i
    cdef list out = [None] * n
    for k in range(n):
        i = at[k]
        if not 0 <= i < size:
            raise IndexError(f"class index {i} outside the {size} classes")
        out[k] = items[i]
    return out


#: The columns :meth:`SingleBuffer.take` and :func:`take_batches` return, in this order: label
#: ``codes`` (int32, -1 for a label not in ``label_index``), ``confidences``, ``latencies``,
#: ``times``, ``lengths`` (each input's ``len``, NaN for None; None when no input at all),
#: ``tokens`` (-1 where not counted), ``known`` (float64 arrays), ``model_s``, ``counted``
#: (whether any prediction came with token counts), ``unknown_at`` and ``unknown`` (the
#: positions and objects of the labels not in ``label_index``), and the kept predictions
#: (:class:`Sampler`): ``kept`` (their positions, int64), ``low_only`` (bool: kept for their low
#: confidence only; None when that is off), ``kept_ids`` and ``kept_inputs`` (None when no
#: input at all). The ids and inputs of the predictions not kept are never copied.
TAKEN_COLUMNS = (
    "codes", "confidences", "latencies", "times", "lengths", "tokens", "known", "model_s",
    "counted", "unknown_at", "unknown", "kept", "low_only", "kept_ids", "kept_inputs",
)


def take_batches(bbuf, Py_ssize_t limit, dict label_index, Sampler sampler):
    """Pop batches (the tuples :meth:`~leanml.monitor.ModelMonitor.record_batch` appends:
    ``(ids, labels, confidences, latencies, inputs, time, tokens, model_seconds)``) from the
    deque ``bbuf`` until they hold ``limit`` predictions or it is empty (at least one batch),
    and transpose them into the flusher's columns (:data:`TAKEN_COLUMNS`), as
    :meth:`SingleBuffer.take` does. ``model_s`` sums, per batch, its ``model_seconds``, else
    its one latency, else its longest finite latency (the batch ran once for all of them).
    Every popped batch is read before any column is returned: a malformed one (a count that
    does not match its ids, an item that is not a number) raises ValueError or TypeError and
    the chunk is dropped as invalid."""
    cdef list batches = []
    cdef Py_ssize_t total = 0, n, i, at
    pop = bbuf.popleft
    while bbuf and (total < limit or not batches):
        b = pop()
        batches.append(b)
        total += len(b[0])
    codes_a = np.empty(total, dtype=np.int32)
    conf_a = np.empty(total, dtype=np.float64)
    lat_a = np.empty(total, dtype=np.float64)
    ts_a = np.empty(total, dtype=np.float64)
    len_a = np.empty(total, dtype=np.float64)
    tok_a = np.empty(total, dtype=np.float64)
    known_a = np.empty(total, dtype=np.float64)
    cdef int[::1] codes = codes_a
    cdef double[::1] conf = conf_a, lat = lat_a, ts = ts_a, lens = len_a, tok = tok_a
    cdef double[::1] known = known_a
    cdef double model_s = 0.0, x, top, when
    cdef bint counted = False, one_lat, any_input = False
    cdef tuple b_
    cdef list bids, labs, inps
    cdef _Codes coder = _Codes(label_index)
    cdef _Picker picker = _Picker(sampler, total)
    at = 0
    for b_ in batches:
        bid, lab, c, lt, inp, when_o, counts, seconds = b_
        bids = bid if type(bid) is list else list(bid)
        n = len(bids)
        labs = lab if type(lab) is list else lab.tolist() if isinstance(lab, np.ndarray) else list(lab)
        if len(labs) != n:
            raise ValueError(f"{len(labs)} labels for a batch of {n} predictions")
        for i in range(n):
            codes[at + i] = coder.code(at + i, labs[i])
        _copy_numbers(c, &conf[at], n, "confidences")
        one_lat = (  # one latency for the whole batch: a number, numpy's too, or a 0-d array
            isinstance(lt, float) or not hasattr(lt, "__len__")
            or (isinstance(lt, np.ndarray) and lt.ndim == 0)
        )
        if one_lat:
            x = float(lt)
            for i in range(n):
                lat[at + i] = x
        else:
            _copy_numbers(lt, &lat[at], n, "latencies")
        if seconds is not None:
            model_s += float(seconds)
        elif one_lat:
            model_s += x if x == x else 0.0
        else:
            top = 0.0
            for i in range(n):
                if lat[at + i] > top:  # NaN compares false
                    top = lat[at + i]
            model_s += top
        when = float(when_o)
        for i in range(n):
            ts[at + i] = when
        if inp is None:
            for i in range(n):
                lens[at + i] = math.nan
                picker.offer(at + i, bids[i], conf[at + i], None)
        else:
            inps = inp if type(inp) is list else list(inp)
            if len(inps) != n:
                raise ValueError(f"{len(inps)} inputs for a batch of {n} predictions")
            for i in range(n):
                item = inps[i]
                if item is None:
                    lens[at + i] = math.nan
                else:
                    lens[at + i] = _length(item)
                    any_input = True
                picker.offer(at + i, bids[i], conf[at + i], item)
        if counts is None:
            for i in range(n):
                tok[at + i] = -1.0
                known[at + i] = 0.0
        else:
            _copy_numbers(counts[0], &tok[at], n, "token counts")
            _copy_numbers(counts[1], &known[at], n, "known-token counts")
            counted = True
        at += n
    return (
        codes_a, conf_a, lat_a, ts_a, len_a if any_input else None, tok_a, known_a, model_s,
        counted, coder.unknown_at, coder.unknown, *picker.result(any_input),
    )


# -- latency sketches (leanml.monitor.sketch.LogSketch) ------------------------------------------

def sketch_add_many(sk, values):
    """:meth:`leanml.monitor.sketch.LogSketch.add_many` of ``values`` (any float64 array) in
    one pass: count, sum, min and max, the values at or below ``min_value`` in
    ``zero_count``, each other value in bucket ``ceil(log(v) / log(gamma))`` (those above
    ``max_value`` in the last bucket), the counts grown by ``sk._ensure``. A NaN is no
    latency: it is left out (it has no bucket)."""
    cdef const double[::1] v = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
    cdef Py_ssize_t n = v.shape[0], i, m = 0
    if n == 0:
        return
    cdef double inv = sk._inv_log_gamma, low = sk.min_value, high = sk.max_value
    cdef long long last = sk._max_index, k, imin = 0, imax = 0, off, zeros = 0
    cdef double x, total = 0.0, lo = math.inf, hi = -math.inf
    cdef long long* idx = <long long*>malloc(n * sizeof(long long))
    cdef long long[::1] counts
    if idx == NULL:
        raise MemoryError()
    try:
        for i in range(n):
            x = v[i]
            if x != x:
                continue
            total += x
            if x < lo:
                lo = x
            if x > hi:
                hi = x
            if x <= low:
                zeros += 1
                continue
            k = last if x > high else <long long>ceil(log(x) * inv)
            if m == 0 or k < imin:
                imin = k
            if m == 0 or k > imax:
                imax = k
            idx[m] = k
            m += 1
        if m + zeros == 0:
            return
        sk.count += m + zeros
        sk.sum += total
        if lo < sk.min:
            sk.min = lo
        if hi > sk.max:
            sk.max = hi
        sk.zero_count += zeros
        if m:
            sk._ensure(imin, imax)
            counts = sk._counts
            off = sk._offset
            for i in range(m):
                counts[idx[i] - off] += 1
    finally:
        free(idx)
