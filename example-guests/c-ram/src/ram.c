/*
 * c-ram: a sparse RAM disk backstore for wasmtap, in C.
 *
 * The disk is cut into 64 KiB chunks (store.c), allocated on the first write
 * of non-zero data and freed by a discard or write-zeroes that covers them
 * whole; unwritten ranges read as zeros. Reads go from the chunks straight
 * into the request with `write-data` (runs of holes become one `zero-data`
 * call); writes arrive with the batch (`describe-batch-with-data`) or are
 * fetched with `read-data`. When guest memory runs out, a write that needs a
 * new chunk fails with `no-space`, like a full thin-provisioned volume.
 *
 * Configuration: `size=<bytes>` (default 64M, at most 1T) and
 * `sector=512|4096` (default 512); the host adds both for its device.
 *
 * This file implements the `driver` and `block-status` exports declared in
 * the generated backstore.h (`wasmtap-guest-c bindings`). Ownership, as the
 * generated glue (backstore.c) implements it:
 *
 * - Arguments of exported functions belong to us: the config string of
 *   `open`, the parent record of `validate-parent` and the list of
 *   `queue-batch` are ours to free (the *_free helpers), and every
 *   `own_request_t` is ours to hand back exactly once, through
 *   `request.complete` or `complete-batch` (both consume it).
 * - What exported functions return (the debug string, block-status extents)
 *   must be malloc'ed: the glue's post-return function frees it.
 * - Lists that imported functions return (`read-data`, `describe-batch-*`)
 *   were allocated in our memory and are ours to free; arguments we pass to
 *   imported functions (`write-data`'s list, log text) stay ours, so they
 *   may point into our own buffers.
 * - A `borrow_request_t` made from an own handle with
 *   `wasmtap_backstore_requests_borrow_request` is the same handle and is
 *   never dropped; `borrow_disk_t` is just our `disk *`.
 */
#include <stdlib.h>
#include <string.h>

#include "backstore.h"
#include "store.h"

/* Shorter names for the generated types. */
typedef exports_wasmtap_backstore_driver_disk_t disk;
typedef wasmtap_backstore_types_error_code_t error_code;
typedef wasmtap_backstore_requests_own_request_t own_request;
typedef wasmtap_backstore_requests_borrow_request_t borrow_request;
typedef wasmtap_backstore_requests_request_info_t request_info;
typedef wasmtap_backstore_requests_result_void_error_code_t request_status;

#define ERR(name) WASMTAP_BACKSTORE_TYPES_ERROR_CODE_##name
#define KIND(name) WASMTAP_BACKSTORE_REQUESTS_KIND_##name
#define LOG(name) WASMTAP_BACKSTORE_LOG_LEVEL_##name

/* The exported resource: one opened disk. */
struct exports_wasmtap_backstore_driver_disk_t {
    store store;
    uint64_t size;     /* bytes, as `info` reports them (kept after close) */
    uint32_t sector;   /* 512 or 4096 */
    bool read_only;
    bool out_of_memory; /* the last chunk allocation failed (logged once) */
    wasmtap_backstore_types_disk_stats_t stats;
};

/* ---- helpers ------------------------------------------------------------ */

/* Log `text` (NUL-terminated, valid UTF-8) through the host. */
static void log_text(wasmtap_backstore_log_level_t level, const char *text) {
    backstore_string_t message;
    backstore_string_set(&message, text); /* borrowed: no copy, no free */
    wasmtap_backstore_log_log(level, &message);
}

static error_code store_error(store_status status) {
    return status == STORE_NO_SPACE ? ERR(NO_SPACE) : ERR(OUT_OF_RANGE);
}

static uint64_t min_u64(uint64_t a, uint64_t b) {
    return a < b ? a : b;
}

/* Count a finished request the way the Rust SDK does: failures only as
 * errors, successes by kind. */
static void count(disk *d, const request_info *info, bool ok) {
    wasmtap_backstore_types_disk_stats_t *s = &d->stats;
    if (!ok) {
        s->errors++;
        return;
    }
    switch (info->kind) {
    case KIND(READ):
        s->reads++;
        s->bytes_read += info->length;
        break;
    case KIND(WRITE):
        s->writes++;
        s->bytes_written += info->length;
        break;
    case KIND(FLUSH):
        s->flushes++;
        break;
    default: /* discard, write-zeroes */
        s->discards++;
        break;
    }
}

/* ---- serving one request ------------------------------------------------ */

/* Fill a read from the chunks. */
static bool do_read(disk *d, borrow_request req, uint64_t offset, uint64_t length,
                    error_code *err) {
    if (!store_in_range(&d->store, offset, length)) {
        *err = ERR(OUT_OF_RANGE);
        return false;
    }
    /* A run of holes not yet answered: `zero_len` bytes from `zero_at`. */
    uint64_t zero_at = 0, zero_len = 0;
    for (uint64_t at = 0; at < length;) {
        uint64_t pos = offset + at;
        uint64_t n = min_u64(CHUNK_SIZE - pos % CHUNK_SIZE, length - at);
        const uint8_t *chunk = store_chunk_at(&d->store, pos);
        if (chunk == NULL) {
            if (zero_len == 0) {
                zero_at = at;
            }
            zero_len += n;
        } else {
            if (zero_len > 0) {
                if (!wasmtap_backstore_requests_method_request_zero_data(req, zero_at, zero_len,
                                                                         err)) {
                    return false;
                }
                zero_len = 0;
            }
            /* The list points into the chunk: the host copies it out
             * during the call and never writes through it. */
            backstore_list_u8_t data = {
                .ptr = (uint8_t *)(chunk + pos % CHUNK_SIZE),
                .len = (size_t)n,
            };
            if (!wasmtap_backstore_requests_method_request_write_data(req, at, &data, err)) {
                return false;
            }
        }
        at += n;
    }
    if (zero_len > 0) {
        return wasmtap_backstore_requests_method_request_zero_data(req, zero_at, zero_len, err);
    }
    return true;
}

/* Store `len` bytes at `offset`, logging the first allocation failure. */
static bool store_data(disk *d, uint64_t offset, const uint8_t *data, uint64_t len,
                       error_code *err) {
    size_t before = d->store.allocated;
    store_status status = store_write(&d->store, offset, data, len);
    if (status == STORE_NO_SPACE) {
        if (!d->out_of_memory) {
            log_text(LOG(WARN), "out of memory: writes that need a new chunk fail with "
                                "no-space until chunks are freed");
            d->out_of_memory = true;
        }
    } else if (d->store.allocated > before) {
        d->out_of_memory = false;
    }
    if (status != STORE_OK) {
        *err = store_error(status);
        return false;
    }
    return true;
}

/* Store a write: from `data` if the batch brought it (`length` bytes),
 * else fetched with `read-data` one chunk-sized piece at a time. */
static bool do_write(disk *d, borrow_request req, const request_info *info, const uint8_t *data,
                     error_code *err) {
    if (!store_in_range(&d->store, info->offset, info->length)) {
        *err = ERR(OUT_OF_RANGE);
        return false;
    }
    if (data != NULL) {
        return store_data(d, info->offset, data, info->length, err);
    }
    for (uint64_t at = 0; at < info->length;) {
        uint64_t pos = info->offset + at;
        uint64_t n = min_u64(CHUNK_SIZE - pos % CHUNK_SIZE, info->length - at);
        backstore_list_u8_t piece;
        if (!wasmtap_backstore_requests_method_request_read_data(req, at, (uint32_t)n, &piece,
                                                                 err)) {
            return false;
        }
        bool ok;
        if (piece.len != n) {
            *err = ERR(INTERNAL); /* the host gave fewer bytes than asked */
            ok = false;
        } else {
            ok = store_data(d, pos, piece.ptr, n, err);
        }
        backstore_list_u8_free(&piece);
        if (!ok) {
            return false;
        }
        at += n;
    }
    return true;
}

/* Serve one described request. `data` is the write's data if the batch
 * brought it, else NULL. Returns false with `*err` set on failure. */
static bool serve(disk *d, borrow_request req, const request_info *info, const uint8_t *data,
                  error_code *err) {
    bool ok;
    switch (info->kind) {
    case KIND(READ):
        ok = do_read(d, req, info->offset, info->length, err);
        break;
    case KIND(WRITE):
        if (d->read_only) {
            *err = ERR(READ_ONLY);
            ok = false;
        } else {
            ok = do_write(d, req, info, data, err);
        }
        break;
    case KIND(FLUSH):
        ok = true; /* no volatile cache: completed writes are in memory */
        break;
    case KIND(DISCARD):
    case KIND(WRITE_ZEROES):
        /* Both make the range read as zeros; whole chunks are freed. */
        if (d->read_only) {
            *err = ERR(READ_ONLY);
            ok = false;
        } else {
            store_status status = store_zero(&d->store, info->offset, info->length);
            ok = status == STORE_OK;
            if (!ok) {
                *err = store_error(status);
            }
        }
        break;
    default:
        *err = ERR(UNSUPPORTED);
        ok = false;
        break;
    }
    count(d, info, ok);
    return ok;
}

static request_status status_of(bool ok, error_code err) {
    request_status status = {.is_err = !ok};
    if (!ok) {
        status.val.err = err;
    }
    return status;
}

/* Describe, serve and complete one request (which this consumes). */
static void serve_one(disk *d, own_request req) {
    borrow_request borrowed = wasmtap_backstore_requests_borrow_request(req);
    request_info info;
    wasmtap_backstore_requests_method_request_describe(borrowed, &info);
    error_code err = ERR(INTERNAL);
    bool ok = serve(d, borrowed, &info, NULL, &err);
    request_status status = status_of(ok, err);
    wasmtap_backstore_requests_static_request_complete(req, &status);
}

/* ---- driver exports ----------------------------------------------------- */

bool exports_wasmtap_backstore_driver_static_disk_open(
    backstore_string_t *config, exports_wasmtap_backstore_driver_open_flags_t flags,
    exports_wasmtap_backstore_driver_own_disk_t *ret, error_code *err) {
    char text[512];
    strbuf why;
    sb_init(&why, text, sizeof text);
    ram_config cfg;
    bool parsed = config_parse((const char *)config->ptr, config->len, &cfg, &why);
    backstore_string_free(config); /* ours; `why` holds a copy of what it quotes */
    if (!parsed) {
        char line[600];
        strbuf msg;
        sb_init(&msg, line, sizeof line);
        sb_str(&msg, "invalid configuration: ");
        sb_mem(&msg, why.buf, why.len);
        log_text(LOG(ERROR), msg.buf);
        *err = ERR(INVALID_CONFIG);
        return false;
    }

    disk *d = calloc(1, sizeof *d);
    if (d == NULL || store_init(&d->store, cfg.size) != STORE_OK) {
        free(d);
        char line[128];
        strbuf msg;
        sb_init(&msg, line, sizeof line);
        sb_str(&msg, "no memory for the chunk table of a ");
        sb_u64(&msg, cfg.size);
        sb_str(&msg, "-byte disk");
        log_text(LOG(ERROR), msg.buf);
        *err = ERR(NO_SPACE);
        return false;
    }
    d->size = cfg.size;
    d->sector = cfg.sector;
    d->read_only = (flags & WASMTAP_BACKSTORE_TYPES_OPEN_FLAGS_READ_ONLY) != 0;
    *ret = exports_wasmtap_backstore_driver_disk_new(d);
    return true;
}

/* The host dropped the disk's last handle. */
void exports_wasmtap_backstore_driver_disk_destructor(disk *d) {
    store_free(&d->store);
    free(d);
}

void exports_wasmtap_backstore_driver_method_disk_info(
    disk *d, exports_wasmtap_backstore_driver_disk_info_t *ret) {
    *ret = (exports_wasmtap_backstore_driver_disk_info_t){
        .size = d->size,
        .sector_size = d->sector,
        .max_transfer = 0,       /* no limit */
        .optimal_transfer = 0,
        .discard = true,         /* discarded ranges read as zeros */
        .discard_granularity = (uint32_t)CHUNK_SIZE,
        .write_cache = false,
        .read_only = d->read_only,
    };
}

bool exports_wasmtap_backstore_driver_method_disk_get_parent_id(disk *d,
                                                                backstore_option_string_t *ret,
                                                                error_code *err) {
    (void)d;
    (void)err;
    ret->is_some = false; /* a base image */
    return true;
}

bool exports_wasmtap_backstore_driver_method_disk_validate_parent(
    disk *d, exports_wasmtap_backstore_driver_parent_t *parent, error_code *err) {
    (void)d;
    (void)err;
    /* A RAM disk has no parent, so the host has no reason to ask; accept,
     * as the Rust SDK's default does. The record is ours to free. */
    exports_wasmtap_backstore_driver_parent_free(parent);
    return true;
}

void exports_wasmtap_backstore_driver_method_disk_queue_read(disk *d, own_request req) {
    serve_one(d, req);
}

void exports_wasmtap_backstore_driver_method_disk_queue_write(disk *d, own_request req) {
    serve_one(d, req);
}

void exports_wasmtap_backstore_driver_method_disk_flush(disk *d, own_request req) {
    serve_one(d, req);
}

void exports_wasmtap_backstore_driver_method_disk_discard(disk *d, own_request req) {
    serve_one(d, req);
}

/* Several requests of any kind: one `describe-batch-with-data` call
 * describes them all and brings the data of the writes of up to a chunk,
 * one `complete-batch` call completes them, in order. */
void exports_wasmtap_backstore_driver_method_disk_queue_batch(
    disk *d, exports_wasmtap_backstore_driver_list_own_request_t *reqs) {
    size_t n = reqs->len;
    borrow_request *borrows = NULL;
    wasmtap_backstore_requests_tuple2_own_request_result_void_error_code_t *done = NULL;
    if (n > 0 && n <= SIZE_MAX / sizeof *done) {
        borrows = malloc(n * sizeof *borrows);
        done = malloc(n * sizeof *done);
    }
    if (borrows == NULL || done == NULL) {
        /* Empty, or no memory for the batch's arrays: one at a time. */
        free(borrows);
        free(done);
        for (size_t i = 0; i < n; i++) {
            serve_one(d, reqs->ptr[i]);
        }
        exports_wasmtap_backstore_driver_list_own_request_free(reqs);
        return;
    }

    for (size_t i = 0; i < n; i++) {
        borrows[i] = wasmtap_backstore_requests_borrow_request(reqs->ptr[i]);
    }
    wasmtap_backstore_requests_list_borrow_request_t list = {.ptr = borrows, .len = n};
    wasmtap_backstore_requests_tuple3_list_request_info_list_bool_list_u8_t described;
    wasmtap_backstore_requests_describe_batch_with_data(&list, CHUNK_SIZE, &described);

    /* Trust the answer's shape only as far as it is consistent: one info
     * and one flag per request, and data parts that fit in the data list.
     * Otherwise fall back to `describe` and `read-data`. */
    bool described_ok = described.f0.len == n && described.f1.len == n;
    bool data_ok = described_ok;
    size_t cursor = 0; /* next unread byte of described.f2 */
    for (size_t i = 0; i < n; i++) {
        request_info info;
        if (described_ok) {
            info = described.f0.ptr[i];
        } else {
            wasmtap_backstore_requests_method_request_describe(borrows[i], &info);
        }
        const uint8_t *data = NULL;
        if (data_ok && described.f1.ptr[i]) {
            if (info.kind == KIND(WRITE) && info.length <= described.f2.len - cursor) {
                data = described.f2.ptr + cursor;
                cursor += (size_t)info.length;
            } else {
                data_ok = false; /* later parts' positions are unknown */
            }
        }
        error_code err = ERR(INTERNAL);
        bool ok = serve(d, borrows[i], &info, data, &err);
        done[i].f0 = reqs->ptr[i];
        done[i].f1 = status_of(ok, err);
    }
    wasmtap_backstore_requests_tuple3_list_request_info_list_bool_list_u8_free(&described);

    /* Hands every request back; the handles are consumed. */
    wasmtap_backstore_requests_list_tuple2_own_request_result_void_error_code_t completions = {
        .ptr = done,
        .len = n,
    };
    wasmtap_backstore_requests_complete_batch(&completions);
    free(done);
    free(borrows);
    exports_wasmtap_backstore_driver_list_own_request_free(reqs);
}

void exports_wasmtap_backstore_driver_method_disk_debug(disk *d, backstore_string_t *ret) {
    char text[256];
    strbuf sb;
    sb_init(&sb, text, sizeof text);
    sb_str(&sb, "c-ram disk: ");
    sb_u64(&sb, d->size);
    sb_str(&sb, " bytes, ");
    sb_u64(&sb, d->sector);
    sb_str(&sb, "-byte sectors; ");
    sb_u64(&sb, d->store.allocated);
    sb_str(&sb, " of ");
    sb_u64(&sb, d->store.nchunks);
    sb_str(&sb, " chunks of 64 KiB allocated (");
    sb_u64(&sb, (uint64_t)d->store.allocated * (CHUNK_SIZE / 1024));
    sb_str(&sb, " KiB)");
    if (d->read_only) {
        sb_str(&sb, "; read-only");
    }
    /* The glue frees what we return with free(): hand it a malloc'ed copy. */
    ret->ptr = malloc(sb.len);
    ret->len = ret->ptr != NULL ? sb.len : 0;
    if (ret->ptr != NULL) {
        memcpy(ret->ptr, sb.buf, sb.len);
    }
}

void exports_wasmtap_backstore_driver_method_disk_stats(
    disk *d, exports_wasmtap_backstore_driver_disk_stats_t *ret) {
    *ret = d->stats;
}

bool exports_wasmtap_backstore_driver_method_disk_close(disk *d, error_code *err) {
    (void)err;
    /* Nothing to flush; give the chunks back now rather than when the host
     * drops the handle. The geometry stays for `info`. */
    store_free(&d->store);
    return true;
}

/* ---- block-status export ------------------------------------------------ */

bool exports_wasmtap_backstore_block_status_query(
    disk *d, uint64_t offset, uint64_t len,
    exports_wasmtap_backstore_block_status_list_block_extent_t *ret, error_code *err) {
    ret->ptr = NULL;
    ret->len = 0;
    if (!store_in_range(&d->store, offset, len)) {
        *err = ERR(OUT_OF_RANGE);
        return false;
    }
    if (len == 0) {
        return true;
    }
    /* At most one extent per chunk the range touches, and MAX_EXTENTS. */
    uint64_t touched = (offset + len - 1) / CHUNK_SIZE - offset / CHUNK_SIZE + 1;
    size_t max = (size_t)min_u64(touched, MAX_EXTENTS);
    store_extent *found = malloc(max * sizeof *found);
    if (found == NULL) {
        *err = ERR(BUSY);
        return false;
    }
    size_t count = store_extents(&d->store, offset, len, found, max);
    exports_wasmtap_backstore_block_status_block_extent_t *out =
        count > 0 ? malloc(count * sizeof *out) : NULL;
    if (count > 0 && out == NULL) {
        free(found);
        *err = ERR(BUSY);
        return false;
    }
    for (size_t i = 0; i < count; i++) {
        out[i] = (exports_wasmtap_backstore_block_status_block_extent_t){
            .offset = found[i].offset,
            .length = found[i].length,
            /* Holes only because discard is advertised (`info`). */
            .state = found[i].mapped ? WASMTAP_BACKSTORE_TYPES_BLOCK_STATE_MAPPED
                                     : WASMTAP_BACKSTORE_TYPES_BLOCK_STATE_HOLE,
        };
    }
    free(found);
    ret->ptr = out; /* freed by the glue after the host copied it */
    ret->len = count;
    return true;
}
