/*
 * A straightforward C RC4+ (CIPHER.md 6.1), the speed reference for the Rust implementation.
 * Checks itself against the k5-iv5-n256 and k32-iv32-n16384 vectors of
 * tests/data/vectors/rc4plus.json, then XORs the keystream into a buffer and prints MB/s
 * (best of several runs): one stream, and four independent streams interleaved; on a CPU with
 * AVX-512 (built with -march=native) also sixteen streams in the lanes of one vector.
 *
 * Build and run: benches/rc4plus_c.sh (gcc -O3 -march=native).
 * Usage: rc4plus [MiB, default 256] [runs, default 5]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    uint8_t s[256];
    uint8_t i, j;
} rc4plus;

static void ksa(rc4plus *c, const uint8_t *key, size_t key_len, const uint8_t *iv, size_t iv_len) {
    uint8_t k[256], v[256] = {0};
    for (int y = 0; y < 256; y++) k[y] = key[y % key_len];
    for (size_t n = 0; n < iv_len; n++) v[127 - n] = v[128 + n] = iv[n];
    uint8_t *s = c->s, j = 0, t;
    for (int y = 0; y < 256; y++) s[y] = (uint8_t)y;
    for (int i = 0; i < 256; i++) {
        j = (uint8_t)(j + s[i] + k[i]);
        t = s[i]; s[i] = s[j]; s[j] = t;
    }
    for (int n = 0; n < 256; n++) {
        int i = n < 128 ? 127 - n : n;
        j = (uint8_t)((uint8_t)(j + s[i]) ^ (uint8_t)(k[i] + v[i]));
        t = s[i]; s[i] = s[j]; s[j] = t;
    }
    for (int y = 0; y < 256; y++) {
        int i = (y % 2 == 0) ? y / 2 : 256 - (y + 1) / 2;
        j = (uint8_t)(j + s[i] + k[i]);
        t = s[i]; s[i] = s[j]; s[j] = t;
    }
    c->i = 0;
    c->j = 0;
}

static inline uint8_t step(uint8_t *restrict s, uint8_t *restrict pi, uint8_t *restrict pj) {
    uint8_t i = (uint8_t)(*pi + 1);
    uint8_t si = s[i];
    uint8_t j = (uint8_t)(*pj + si);
    uint8_t sj = s[j];
    s[i] = sj;
    s[j] = si;
    uint8_t t = (uint8_t)(si + sj);
    uint8_t t1 = (uint8_t)((uint8_t)(s[(uint8_t)((i >> 3) ^ (j << 5))] + s[(uint8_t)((i << 5) ^ (j >> 3))]) ^ 0xAA);
    uint8_t t2 = (uint8_t)(j + si);
    *pi = i;
    *pj = j;
    return (uint8_t)((uint8_t)(s[t] + s[t1]) ^ s[t2]);
}

static void apply(rc4plus *restrict c, uint8_t *restrict buf, size_t len) {
    uint8_t i = c->i, j = c->j;
    for (size_t n = 0; n < len; n++) buf[n] ^= step(c->s, &i, &j);
    c->i = i;
    c->j = j;
}

static void apply4(rc4plus *restrict c, uint8_t *restrict b0, uint8_t *restrict b1,
                   uint8_t *restrict b2, uint8_t *restrict b3, size_t len) {
    uint8_t i0 = c[0].i, j0 = c[0].j, i1 = c[1].i, j1 = c[1].j;
    uint8_t i2 = c[2].i, j2 = c[2].j, i3 = c[3].i, j3 = c[3].j;
    for (size_t n = 0; n < len; n++) {
        b0[n] ^= step(c[0].s, &i0, &j0);
        b1[n] ^= step(c[1].s, &i1, &j1);
        b2[n] ^= step(c[2].s, &i2, &j2);
        b3[n] ^= step(c[3].s, &i3, &j3);
    }
    c[0].i = i0; c[0].j = j0; c[1].i = i1; c[1].j = j1;
    c[2].i = i2; c[2].j = j2; c[3].i = i3; c[3].j = j3;
}

#ifdef __AVX512F__
#include <immintrin.h>
/*
 * Sixteen streams in the 32-bit lanes of one AVX-512 vector: blocks are keyed independently, so
 * one PRGA+ step can advance sixteen blocks at once. The tables are stored transposed as
 * dwords, S_k[x] at s[x * 16 + k], so that S[i] of all lanes (i is the same in every lane) is
 * one aligned vector; every other lookup is a gather (six per step) and the write of S[j] a
 * scatter. Lane k's output byte n goes to out[n * 16 + k].
 */
typedef struct { uint32_t s[256 * 16] __attribute__((aligned(64))); } rc4plus16;

static void transpose16(rc4plus16 *t, const rc4plus *c) {
    for (int k = 0; k < 16; k++)
        for (int x = 0; x < 256; x++) t->s[x * 16 + k] = c[k].s[x];
}

static inline __m512i lookup16(const int *s, __m512i x, __m512i lanes) {
    return _mm512_i32gather_epi32(_mm512_or_si512(_mm512_slli_epi32(x, 4), lanes), s, 4);
}

/* Runs `len` steps from i = 0, j = 0 (a fresh block). */
static void apply16(rc4plus16 *t, uint8_t *out, size_t len) {
    const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i byte = _mm512_set1_epi32(255), aa = _mm512_set1_epi32(0xAA);
    int *s = (int *)t->s;
    __m512i j = _mm512_setzero_si512();
    for (size_t n = 0; n < len; n++) {
        unsigned i = (unsigned)(n + 1) & 255;
        __m512i si = _mm512_load_si512(s + i * 16);
        j = _mm512_and_si512(_mm512_add_epi32(j, si), byte);
        __m512i jx = _mm512_or_si512(_mm512_slli_epi32(j, 4), lanes);
        __m512i sj = _mm512_i32gather_epi32(jx, s, 4);
        _mm512_store_si512(s + i * 16, sj);
        _mm512_i32scatter_epi32(s, jx, si, 4);
        __m512i tt = _mm512_and_si512(_mm512_add_epi32(si, sj), byte);
        __m512i a = _mm512_xor_si512(_mm512_set1_epi32((int)(i >> 3)),
                                     _mm512_and_si512(_mm512_slli_epi32(j, 5), byte));
        __m512i b = _mm512_xor_si512(_mm512_set1_epi32((int)((i << 5) & 255)), _mm512_srli_epi32(j, 3));
        __m512i t1 = _mm512_xor_si512(
            _mm512_and_si512(_mm512_add_epi32(lookup16(s, a, lanes), lookup16(s, b, lanes)), byte), aa);
        __m512i t2 = _mm512_and_si512(_mm512_add_epi32(j, si), byte);
        __m512i z = _mm512_xor_si512(_mm512_add_epi32(lookup16(s, tt, lanes), lookup16(s, t1, lanes)),
                                     lookup16(s, t2, lanes));
        _mm_storeu_si128((__m128i *)(out + n * 16), _mm512_cvtepi32_epi8(z));
    }
}

/* Sixteen fresh streams: the vector output must equal each lane's scalar keystream. */
static int check16(void) {
    enum { LEN = 4096 };
    static rc4plus c[16];
    static rc4plus16 t;
    static uint8_t out[LEN * 16];
    uint8_t key[32] = {7};
    for (int k = 0; k < 16; k++) { key[31] = (uint8_t)k; ksa(&c[k], key, 32, NULL, 0); }
    transpose16(&t, c);
    apply16(&t, out, LEN);
    for (int k = 0; k < 16; k++)
        for (size_t n = 0; n < LEN; n++)
            if (step(c[k].s, &c[k].i, &c[k].j) != out[n * 16 + k]) {
                fprintf(stderr, "16 lanes: lane %d differs at byte %zu\n", k, n);
                return 0;
            }
    fprintf(stderr, "16 lanes: equal to 16 scalar streams: ok\n");
    return 1;
}
#endif

#ifdef __clang__
#define COMPILER "clang"
#else
#define COMPILER "gcc"
#endif

static void unhex(const char *h, uint8_t *out) {
    for (size_t n = 0; h[2 * n]; n++) sscanf(h + 2 * n, "%2hhx", &out[n]);
}

static int check(const char *name, const char *key_hex, const char *iv_hex, size_t n,
                 size_t at, const char *expect_hex) {
    uint8_t key[256], iv[128], expect[64], *stream = calloc(n, 1);
    size_t key_len = strlen(key_hex) / 2, iv_len = strlen(iv_hex) / 2;
    unhex(key_hex, key);
    unhex(iv_hex, iv);
    unhex(expect_hex, expect);
    rc4plus c;
    ksa(&c, key, key_len, iv, iv_len);
    apply(&c, stream, n);
    int ok = memcmp(stream + at, expect, strlen(expect_hex) / 2) == 0;
    fprintf(stderr, "vector %s: %s\n", name, ok ? "ok" : "MISMATCH");
    free(stream);
    return ok;
}

static double clock_seconds(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Wall time and this thread's CPU time; on a shared machine the CPU time is the steadier. */
typedef struct { double wall, cpu; } stamp;
static stamp now(void) {
    stamp t = { clock_seconds(CLOCK_MONOTONIC), clock_seconds(CLOCK_THREAD_CPUTIME_ID) };
    return t;
}
static void keep_best(stamp t0, stamp t1, stamp *best) {
    if (t1.wall - t0.wall < best->wall) best->wall = t1.wall - t0.wall;
    if (t1.cpu - t0.cpu < best->cpu) best->cpu = t1.cpu - t0.cpu;
}

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 256;
    int runs = argc > 2 ? atoi(argv[2]) : 5;
    if (!check("k5-iv5-n256", "0102030405", "a0a1a2a3a4", 256, 0,
               "560dec0d212d194bac42d7e0984c29fa9209bfc0f20038dc88b37c941c0226d5") ||
        !check("k32-iv32-n16384",
               "636495997ccfb27880f1290d244874d8b4fe6d79692ec0eabf825fa6b86c1b85",
               "0cc9dd0c1562b590afe2602f3557704ff5bd59f385add8cb62ed2dfde4f4dfb1", 16384, 16384 - 32,
               "b9d2875718c77284ea596d3cbae26b3ff65a1eabed03795423945f94ba33f61c"))
        return 1;
#ifdef __AVX512F__
    if (!check16()) return 1;
#endif

    size_t len = mib << 20;
    uint8_t *buf = malloc(len);
    memset(buf, 0x5a, len);
    uint8_t key[32] = {1, 2, 3};
    stamp best1 = { 1e9, 1e9 }, best4 = { 1e9, 1e9 }, best16 = { 1e9, 1e9 };
    (void)best16;
    for (int r = 0; r < runs; r++) {
        rc4plus c;
        ksa(&c, key, 32, NULL, 0);
        stamp t0 = now();
        apply(&c, buf, len);
        stamp t1 = now();
        keep_best(t0, t1, &best1);

        rc4plus c4[4];
        for (int n = 0; n < 4; n++) { key[31] = (uint8_t)n; ksa(&c4[n], key, 32, NULL, 0); }
        size_t q = len / 4;
        t0 = now();
        apply4(c4, buf, buf + q, buf + 2 * q, buf + 3 * q, q);
        t1 = now();
        keep_best(t0, t1, &best4);
#ifdef __AVX512F__
        /* Sixteen fresh 16 KiB blocks at a time, their output interleaved: what content needs. */
        static rc4plus16 t16;
        rc4plus c16[16];
        size_t block = 16384, groups = len / (16 * block);
        t0 = now();
        for (size_t g = 0; g < groups; g++) {
            for (int k = 0; k < 16; k++) { key[31] = (uint8_t)k; ksa(&c16[k], key, 32, NULL, 0); }
            transpose16(&t16, c16);
            apply16(&t16, buf + g * 16 * block, block);
        }
        t1 = now();
        keep_best(t0, t1, &best16);
#endif
    }
    /* Keep the result observable so the loops cannot be dropped. */
    unsigned sum = 0;
    for (size_t n = 0; n < len; n += 4096) sum += buf[n];
    printf("C RC4+ (%s -O3), %zu MiB, best of %d (checksum %u)\n", COMPILER, mib, runs, sum);
    printf("  one stream:           %4.0f MB/s wall, %4.0f MB/s cpu time\n",
           (double)len / best1.wall / 1e6, (double)len / best1.cpu / 1e6);
    printf("  four interleaved:     %4.0f MB/s wall, %4.0f MB/s cpu time\n",
           (double)len / best4.wall / 1e6, (double)len / best4.cpu / 1e6);
#ifdef __AVX512F__
    printf("  16 lanes AVX-512 (with KSA+ and transposition per 16 blocks): %4.0f MB/s wall, %4.0f MB/s cpu time\n",
           (double)len / best16.wall / 1e6, (double)len / best16.cpu / 1e6);
#endif
    free(buf);
    return 0;
}
