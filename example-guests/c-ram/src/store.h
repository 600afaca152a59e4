/*
 * The parts of the c-ram backstore that do not talk to the host: the sparse
 * chunk store, the configuration parser and a small string builder.
 *
 * Nothing here includes the generated bindings, so the same file compiles
 * for wasm32-wasi (the backstore) and natively (tests/store_test.c).
 */
#ifndef C_RAM_STORE_H
#define C_RAM_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Allocation unit: 64 KiB, a multiple of both sector sizes. */
#define CHUNK_SIZE ((uint64_t)64 * 1024)

/* Size when the configuration names none (the host always adds size=). */
#define DEFAULT_SIZE ((uint64_t)64 << 20)

/* The largest disk: 1 TiB, whose chunk table takes 64 MiB of a wasm32
 * guest's memory (one 4-byte pointer per chunk). */
#define MAX_SIZE ((uint64_t)1 << 40)

/* Most extents one block-status answer holds (the host asks again). */
#define MAX_EXTENTS 1024

/* What a store operation can fail with; ram.c maps these to error codes. */
typedef enum store_status {
    STORE_OK = 0,
    STORE_NO_SPACE,     /* an allocation failed: the "thin pool" is full */
    STORE_OUT_OF_RANGE, /* offset/length outside the disk */
} store_status;

/* Sparse storage for a disk's bytes: chunks[i] holds bytes
 * [i * CHUNK_SIZE, (i + 1) * CHUNK_SIZE), or is NULL when they read as
 * zeros and take no memory. */
typedef struct store {
    uint64_t size;     /* bytes */
    size_t nchunks;    /* entries of `chunks` */
    uint8_t **chunks;  /* NULL entries are holes */
    size_t allocated;  /* non-NULL entries */
} store;

/* What a range of the store holds, for block status. */
typedef struct store_extent {
    uint64_t offset;
    uint64_t length;
    bool mapped;       /* false: a hole (reads as zeros) */
} store_extent;

/* An empty store of `size` bytes. STORE_NO_SPACE if the chunk table does
 * not fit in memory. */
store_status store_init(store *s, uint64_t size);

/* Free every chunk and the table; the store is empty (size 0) afterwards. */
void store_free(store *s);

/* True if `len` bytes at `offset` lie inside the store (no overflow). */
bool store_in_range(const store *s, uint64_t offset, uint64_t len);

/* The chunk holding byte `offset`, or NULL for a hole. */
const uint8_t *store_chunk_at(const store *s, uint64_t offset);

/* Copy `len` bytes of `data` to `offset`, allocating chunks as needed.
 * All-zero data for a hole allocates nothing. On STORE_NO_SPACE the chunks
 * before the one that could not be allocated have been written. */
store_status store_write(store *s, uint64_t offset, const uint8_t *data, uint64_t len);

/* Make `len` bytes at `offset` read as zeros: chunks the range covers whole
 * are freed, partly covered ones zero-filled. */
store_status store_zero(store *s, uint64_t offset, uint64_t len);

/* Describe `len` bytes at `offset` as extents contiguous from `offset`,
 * merging neighbours in the same state: at most `max` of them into `out`.
 * Returns how many were written (they may cover less than `len`). */
size_t store_extents(const store *s, uint64_t offset, uint64_t len,
                     store_extent *out, size_t max);

/* A fixed-capacity text buffer that truncates instead of overflowing, and
 * only ever at a UTF-8 character boundary (the host refuses strings that
 * are not valid UTF-8, and configuration text may contain any character). */
typedef struct strbuf {
    char *buf;       /* always NUL-terminated */
    size_t cap;      /* bytes of buf, the NUL included */
    size_t len;
    bool truncated;  /* something did not fit; later appends are dropped */
} strbuf;

void sb_init(strbuf *sb, char *buf, size_t cap);
void sb_mem(strbuf *sb, const char *text, size_t len); /* text: valid UTF-8 */
void sb_str(strbuf *sb, const char *text);             /* NUL-terminated */
void sb_u64(strbuf *sb, uint64_t value);               /* decimal */

/* The device configuration: `key=value,...` with keys `size` (bytes, with
 * an optional K/M/G/T/P suffix, powers of 1024; KiB, MB, ... and lower case
 * alike) and `sector` (512 or 4096). Spaces around keys and values are
 * ignored, empty entries skipped. */
typedef struct ram_config {
    uint64_t size;   /* aligned down to `sector`, at least one sector */
    uint32_t sector;
} ram_config;

/* Parse `len` bytes of `text` (not NUL-terminated). On failure returns
 * false and writes why into `why` (an unknown or repeated key, a value that
 * is not a size, a sector size other than 512 or 4096, a size of zero or
 * above MAX_SIZE). */
bool config_parse(const char *text, size_t len, ram_config *out, strbuf *why);

/* Parse a size (`512`, `64M`, `1GiB`). False if malformed or past 2^64. */
bool parse_size(const char *text, size_t len, uint64_t *out);

#endif
