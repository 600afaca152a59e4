/*
 * Native unit tests of store.c (chunk store, configuration, string
 * builder): the parts of c-ram that do not talk to the host. build.sh
 * compiles and runs them with the build machine's clang before building
 * the component.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/store.h"

static int failures;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                               \
        }                                                                             \
    } while (0)

static bool region_is(const store *s, uint64_t offset, uint64_t len, uint8_t byte) {
    for (uint64_t i = 0; i < len; i++) {
        const uint8_t *chunk = store_chunk_at(s, offset + i);
        uint8_t b = chunk == NULL ? 0 : chunk[(offset + i) % CHUNK_SIZE];
        if (b != byte) {
            return false;
        }
    }
    return true;
}

static void test_fresh_store_is_sparse(void) {
    store s;
    CHECK(store_init(&s, 1 << 20) == STORE_OK);
    CHECK(s.nchunks == 16);
    CHECK(s.allocated == 0);
    CHECK(store_chunk_at(&s, 4096) == NULL);
    CHECK(region_is(&s, 0, 1 << 20, 0));
    store_free(&s);

    /* A size that is not a whole number of chunks still gets its tail. */
    CHECK(store_init(&s, CHUNK_SIZE + 512) == STORE_OK);
    CHECK(s.nchunks == 2);
    store_free(&s);
}

static void test_partial_write_allocates_one_chunk(void) {
    store s;
    uint8_t data[1024];
    memset(data, 0xab, sizeof data);
    CHECK(store_init(&s, 1 << 20) == STORE_OK);
    CHECK(store_write(&s, CHUNK_SIZE + 512, data, sizeof data) == STORE_OK);
    CHECK(s.allocated == 1);
    CHECK(region_is(&s, CHUNK_SIZE + 512, 1024, 0xab));
    CHECK(region_is(&s, CHUNK_SIZE, 512, 0));
    CHECK(region_is(&s, CHUNK_SIZE + 1536, CHUNK_SIZE - 1536, 0));
    CHECK(store_chunk_at(&s, 0) == NULL);
    store_free(&s);
}

static void test_zero_writes_stay_sparse(void) {
    store s;
    uint8_t zeros[4096] = {0};
    CHECK(store_init(&s, 1 << 20) == STORE_OK);
    CHECK(store_write(&s, 0, zeros, sizeof zeros) == STORE_OK);
    CHECK(s.allocated == 0);
    store_free(&s);
}

static void test_write_across_chunks(void) {
    store s;
    uint8_t *data = malloc(2 * CHUNK_SIZE);
    CHECK(data != NULL);
    for (size_t i = 0; i < 2 * CHUNK_SIZE; i++) {
        data[i] = (uint8_t)(i % 251 + 1);
    }
    CHECK(store_init(&s, 4 * CHUNK_SIZE) == STORE_OK);
    /* Half of chunk 0, all of chunk 1, half of chunk 2. */
    CHECK(store_write(&s, CHUNK_SIZE / 2, data, 2 * CHUNK_SIZE) == STORE_OK);
    CHECK(s.allocated == 3);
    bool same = true;
    for (uint64_t i = 0; i < 2 * CHUNK_SIZE; i++) {
        uint64_t pos = CHUNK_SIZE / 2 + i;
        same = same && store_chunk_at(&s, pos)[pos % CHUNK_SIZE] == data[i];
    }
    CHECK(same);
    CHECK(region_is(&s, 0, CHUNK_SIZE / 2, 0));
    free(data);
    store_free(&s);
}

static void test_zero_frees_whole_chunks(void) {
    store s;
    uint8_t *ones = malloc(CHUNK_SIZE);
    CHECK(ones != NULL);
    memset(ones, 1, CHUNK_SIZE);
    CHECK(store_init(&s, 4 * CHUNK_SIZE) == STORE_OK);
    for (uint64_t c = 0; c < 3; c++) {
        CHECK(store_write(&s, c * CHUNK_SIZE, ones, CHUNK_SIZE) == STORE_OK);
    }
    /* The second half of chunk 0 and all of chunk 1. */
    CHECK(store_zero(&s, CHUNK_SIZE / 2, CHUNK_SIZE + CHUNK_SIZE / 2) == STORE_OK);
    CHECK(s.allocated == 2);
    CHECK(region_is(&s, 0, CHUNK_SIZE / 2, 1));
    CHECK(region_is(&s, CHUNK_SIZE / 2, CHUNK_SIZE / 2, 0));
    CHECK(store_chunk_at(&s, CHUNK_SIZE) == NULL);
    CHECK(region_is(&s, 2 * CHUNK_SIZE, CHUNK_SIZE, 1));
    free(ones);
    store_free(&s);
}

static void test_ranges_are_checked(void) {
    store s;
    uint8_t byte = 1;
    CHECK(store_init(&s, 1 << 20) == STORE_OK);
    CHECK(store_in_range(&s, 0, 1 << 20));
    CHECK(store_in_range(&s, 1 << 20, 0));
    CHECK(!store_in_range(&s, 1 << 20, 1));
    CHECK(!store_in_range(&s, UINT64_MAX, 2)); /* offset + len overflows */
    CHECK(!store_in_range(&s, 512, UINT64_MAX));
    CHECK(store_write(&s, (1 << 20) - 512, &byte, 1024) == STORE_OUT_OF_RANGE);
    CHECK(store_zero(&s, UINT64_MAX - 511, 512) == STORE_OUT_OF_RANGE);
    CHECK(store_chunk_at(&s, UINT64_MAX) == NULL);
    CHECK(s.allocated == 0);
    store_free(&s);
}

static void test_extents_follow_chunks(void) {
    store s;
    store_extent out[8];
    uint8_t byte = 1;
    CHECK(store_init(&s, 8 * CHUNK_SIZE) == STORE_OK);
    CHECK(store_write(&s, 2 * CHUNK_SIZE + 512, &byte, 1) == STORE_OK);
    CHECK(store_write(&s, 3 * CHUNK_SIZE, &byte, 1) == STORE_OK);

    size_t n = store_extents(&s, 512, 8 * CHUNK_SIZE - 512, out, 8);
    CHECK(n == 3);
    CHECK(out[0].offset == 512 && out[0].length == 2 * CHUNK_SIZE - 512 && !out[0].mapped);
    CHECK(out[1].offset == 2 * CHUNK_SIZE && out[1].length == 2 * CHUNK_SIZE && out[1].mapped);
    CHECK(out[2].offset == 4 * CHUNK_SIZE && out[2].length == 4 * CHUNK_SIZE && !out[2].mapped);

    /* Inside one chunk. */
    n = store_extents(&s, 2 * CHUNK_SIZE + 4096, 4096, out, 8);
    CHECK(n == 1 && out[0].offset == 2 * CHUNK_SIZE + 4096 && out[0].length == 4096);
    CHECK(out[0].mapped);

    /* A full answer stops where the next extent would begin. */
    n = store_extents(&s, 0, 8 * CHUNK_SIZE, out, 2);
    CHECK(n == 2 && out[1].offset == 2 * CHUNK_SIZE && out[1].length == 2 * CHUNK_SIZE);

    CHECK(store_zero(&s, 2 * CHUNK_SIZE, 2 * CHUNK_SIZE) == STORE_OK);
    n = store_extents(&s, 0, 8 * CHUNK_SIZE, out, 8);
    CHECK(n == 1 && out[0].length == 8 * CHUNK_SIZE && !out[0].mapped);
    CHECK(store_extents(&s, 8 * CHUNK_SIZE, 512, out, 8) == 0); /* out of range */
    store_free(&s);
}

/* Parse `text`; on failure copy the reason into `why`. */
static bool parse(const char *text, ram_config *cfg, char *why, size_t cap) {
    strbuf sb;
    sb_init(&sb, why, cap);
    return config_parse(text, strlen(text), cfg, &sb);
}

static void test_config(void) {
    ram_config cfg;
    char why[256];

    CHECK(parse("", &cfg, why, sizeof why));
    CHECK(cfg.size == DEFAULT_SIZE && cfg.sector == 512);

    CHECK(parse("size=1M,sector=4096", &cfg, why, sizeof why));
    CHECK(cfg.size == 1 << 20 && cfg.sector == 4096);

    CHECK(parse(" sector = 512 ,, size = 2GiB ,", &cfg, why, sizeof why));
    CHECK(cfg.size == (uint64_t)2 << 30 && cfg.sector == 512);

    /* Sizes are aligned down to the sector. */
    CHECK(parse("size=10000,sector=4096", &cfg, why, sizeof why));
    CHECK(cfg.size == 8192);

    CHECK(!parse("size=1M,szie=2M", &cfg, why, sizeof why));
    CHECK(strstr(why, "unknown key `szie`") != NULL);
    CHECK(!parse("size=1M,size=2M", &cfg, why, sizeof why));
    CHECK(strstr(why, "given twice") != NULL);
    CHECK(!parse("sector=1024", &cfg, why, sizeof why));
    CHECK(strstr(why, "512 or 4096, not 1024") != NULL);
    CHECK(!parse("size=2T", &cfg, why, sizeof why));
    CHECK(strstr(why, "larger than the maximum") != NULL);
    CHECK(!parse("size=100", &cfg, why, sizeof why));
    CHECK(strstr(why, "smaller than one sector") != NULL);
    CHECK(!parse("size", &cfg, why, sizeof why));
    CHECK(strstr(why, "needs a value") != NULL);
    CHECK(!parse("size=1X", &cfg, why, sizeof why));
    CHECK(strstr(why, "`1X` is not a size") != NULL);
    CHECK(!parse("=5", &cfg, why, sizeof why));
    CHECK(strstr(why, "has no key") != NULL);
    CHECK(!parse("readonly", &cfg, why, sizeof why));
}

static void test_parse_size(void) {
    uint64_t v = 0;
    CHECK(parse_size("4096", 4, &v) && v == 4096);
    CHECK(parse_size("4K", 2, &v) && v == 4096);
    CHECK(parse_size("512m", 4, &v) && v == (uint64_t)512 << 20);
    CHECK(parse_size("1GB", 3, &v) && v == (uint64_t)1 << 30);
    CHECK(parse_size("2T", 2, &v) && v == (uint64_t)2 << 40);
    CHECK(parse_size("7b", 2, &v) && v == 7);
    CHECK(!parse_size("", 0, &v));
    CHECK(!parse_size("G", 1, &v));
    CHECK(!parse_size("-1", 2, &v));
    CHECK(!parse_size("1.5G", 4, &v));
    CHECK(!parse_size("16384P", 6, &v));                /* 2^64 overflows */
    CHECK(!parse_size("99999999999999999999", 20, &v)); /* > 2^64 - 1 */
    CHECK(parse_size("18446744073709551615", 20, &v) && v == UINT64_MAX);
}

static void test_strbuf_truncates_at_characters(void) {
    char buf[8];
    strbuf sb;
    sb_init(&sb, buf, sizeof buf);
    sb_str(&sb, "abcde");
    sb_str(&sb, "\xc3\xa9\xc3\xa9"); /* two 2-byte characters; room for 2 bytes */
    CHECK(strcmp(buf, "abcde\xc3\xa9") == 0);
    CHECK(sb.truncated);
    sb_str(&sb, "x"); /* dropped after a truncation */
    CHECK(sb.len == 7);

    sb_init(&sb, buf, sizeof buf);
    sb_str(&sb, "abcdef");
    sb_str(&sb, "\xe2\x82\xac"); /* 3 bytes, 1 byte of room: nothing fits */
    CHECK(strcmp(buf, "abcdef") == 0);

    sb_init(&sb, buf, sizeof buf);
    sb_u64(&sb, 1234567);
    CHECK(strcmp(buf, "1234567") == 0);
    sb_init(&sb, buf, sizeof buf);
    sb_u64(&sb, 0);
    CHECK(strcmp(buf, "0") == 0);
}

int main(void) {
    test_fresh_store_is_sparse();
    test_partial_write_allocates_one_chunk();
    test_zero_writes_stay_sparse();
    test_write_across_chunks();
    test_zero_frees_whole_chunks();
    test_ranges_are_checked();
    test_extents_follow_chunks();
    test_config();
    test_parse_size();
    test_strbuf_truncates_at_characters();
    if (failures > 0) {
        fprintf(stderr, "store_test: %d check(s) failed\n", failures);
        return 1;
    }
    printf("store_test: all checks passed\n");
    return 0;
}
