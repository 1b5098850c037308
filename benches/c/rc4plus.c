/*
 * A straightforward C RC4+ (CIPHER.md 6.1), the speed reference for the Rust implementation.
 * Checks itself against the k5-iv5-n256 and k32-iv32-n16384 vectors of
 * tests/data/vectors/rc4plus.json, then XORs the keystream into a buffer and prints MB/s
 * (best of several runs): one stream, and four independent streams interleaved.
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

    size_t len = mib << 20;
    uint8_t *buf = malloc(len);
    memset(buf, 0x5a, len);
    uint8_t key[32] = {1, 2, 3};
    stamp best1 = { 1e9, 1e9 }, best4 = { 1e9, 1e9 };
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
    }
    /* Keep the result observable so the loops cannot be dropped. */
    unsigned sum = 0;
    for (size_t n = 0; n < len; n += 4096) sum += buf[n];
    printf("C RC4+ (%s -O3), %zu MiB, best of %d (checksum %u)\n", COMPILER, mib, runs, sum);
    printf("  one stream:           %4.0f MB/s wall, %4.0f MB/s cpu time\n",
           (double)len / best1.wall / 1e6, (double)len / best1.cpu / 1e6);
    printf("  four interleaved:     %4.0f MB/s wall, %4.0f MB/s cpu time\n",
           (double)len / best4.wall / 1e6, (double)len / best4.cpu / 1e6);
    free(buf);
    return 0;
}
