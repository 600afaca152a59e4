/*
 * Chunk store, configuration parser and string builder of the c-ram
 * backstore. See store.h. Plain C11 and libc's malloc/string functions only:
 * nothing that needs WASI (no stdio, time or environment), so the linked
 * module imports nothing but the backstore's own interfaces.
 */
#include "store.h"

#include <stdlib.h>
#include <string.h>

/* ---- chunk store -------------------------------------------------------- */

store_status store_init(store *s, uint64_t size) {
    memset(s, 0, sizeof *s);
    uint64_t count = size / CHUNK_SIZE + (size % CHUNK_SIZE != 0);
    if (count > SIZE_MAX / sizeof(uint8_t *)) {
        return STORE_NO_SPACE;
    }
    if (count > 0) {
        /* calloc: every entry starts as a hole. */
        s->chunks = calloc((size_t)count, sizeof(uint8_t *));
        if (s->chunks == NULL) {
            return STORE_NO_SPACE;
        }
    }
    s->size = size;
    s->nchunks = (size_t)count;
    return STORE_OK;
}

void store_free(store *s) {
    for (size_t i = 0; i < s->nchunks; i++) {
        free(s->chunks[i]);
    }
    free(s->chunks);
    memset(s, 0, sizeof *s);
}

bool store_in_range(const store *s, uint64_t offset, uint64_t len) {
    return offset <= s->size && len <= s->size - offset;
}

/* Index of the chunk holding byte `offset`; callers checked the range, so
 * it is below nchunks and fits in size_t. */
static size_t chunk_index(uint64_t offset) {
    return (size_t)(offset / CHUNK_SIZE);
}

const uint8_t *store_chunk_at(const store *s, uint64_t offset) {
    if (offset >= s->size) {
        return NULL;
    }
    return s->chunks[chunk_index(offset)];
}

/* Bytes from `offset` to the end of its chunk, at most `len`. */
static uint64_t piece(uint64_t offset, uint64_t len) {
    uint64_t room = CHUNK_SIZE - offset % CHUNK_SIZE;
    return len < room ? len : room;
}

static bool all_zero(const uint8_t *data, size_t len) {
    for (size_t i = 0; i < len; i++) {
        if (data[i] != 0) {
            return false;
        }
    }
    return true;
}

store_status store_write(store *s, uint64_t offset, const uint8_t *data, uint64_t len) {
    if (!store_in_range(s, offset, len)) {
        return STORE_OUT_OF_RANGE;
    }
    while (len > 0) {
        size_t n = (size_t)piece(offset, len);
        size_t at = (size_t)(offset % CHUNK_SIZE);
        uint8_t **slot = &s->chunks[chunk_index(offset)];
        if (*slot == NULL && !all_zero(data, n)) {
            /* A write covering the whole chunk overwrites every byte, so
             * it needs no zero-filled chunk. */
            uint8_t *chunk = n == CHUNK_SIZE ? malloc(CHUNK_SIZE) : calloc(1, CHUNK_SIZE);
            if (chunk == NULL) {
                return STORE_NO_SPACE;
            }
            *slot = chunk;
            s->allocated++;
        }
        if (*slot != NULL) {
            memcpy(*slot + at, data, n);
        }
        offset += n;
        data += n;
        len -= n;
    }
    return STORE_OK;
}

store_status store_zero(store *s, uint64_t offset, uint64_t len) {
    if (!store_in_range(s, offset, len)) {
        return STORE_OUT_OF_RANGE;
    }
    while (len > 0) {
        size_t n = (size_t)piece(offset, len);
        uint8_t **slot = &s->chunks[chunk_index(offset)];
        if (*slot != NULL) {
            if (n == CHUNK_SIZE) {
                free(*slot);
                *slot = NULL;
                s->allocated--;
            } else {
                memset(*slot + offset % CHUNK_SIZE, 0, n);
            }
        }
        offset += n;
        len -= n;
    }
    return STORE_OK;
}

size_t store_extents(const store *s, uint64_t offset, uint64_t len,
                     store_extent *out, size_t max) {
    size_t count = 0;
    if (!store_in_range(s, offset, len)) {
        return 0;
    }
    while (len > 0) {
        uint64_t n = piece(offset, len);
        bool mapped = s->chunks[chunk_index(offset)] != NULL;
        if (count > 0 && out[count - 1].mapped == mapped) {
            out[count - 1].length += n;
        } else if (count == max) {
            break; /* full: the host asks again from where this ends */
        } else {
            out[count++] = (store_extent){.offset = offset, .length = n, .mapped = mapped};
        }
        offset += n;
        len -= n;
    }
    return count;
}

/* ---- string builder ----------------------------------------------------- */

void sb_init(strbuf *sb, char *buf, size_t cap) {
    sb->buf = buf;
    sb->cap = cap;
    sb->len = 0;
    sb->truncated = cap == 0;
    if (cap > 0) {
        buf[0] = '\0';
    }
}

void sb_mem(strbuf *sb, const char *text, size_t len) {
    if (sb->truncated) {
        return;
    }
    size_t room = sb->cap - 1 - sb->len; /* keep one byte for the NUL */
    size_t n = len;
    if (n > room) {
        n = room;
        /* text[n] is the first byte left out: if it continues a UTF-8
         * sequence, cut before that sequence's first byte. */
        while (n > 0 && ((unsigned char)text[n] & 0xC0) == 0x80) {
            n--;
        }
        sb->truncated = true;
    }
    memcpy(sb->buf + sb->len, text, n);
    sb->len += n;
    sb->buf[sb->len] = '\0';
}

void sb_str(strbuf *sb, const char *text) {
    sb_mem(sb, text, strlen(text));
}

void sb_u64(strbuf *sb, uint64_t value) {
    char digits[20]; /* 2^64 - 1 has 20 digits */
    size_t n = sizeof digits;
    do {
        digits[--n] = (char)('0' + value % 10);
        value /= 10;
    } while (value > 0);
    sb_mem(sb, digits + n, sizeof digits - n);
}

/* ---- configuration ------------------------------------------------------ */

static bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Shrink [*text, *text + *len) to exclude surrounding white space. */
static void trim(const char **text, size_t *len) {
    while (*len > 0 && is_space((*text)[0])) {
        (*text)++;
        (*len)--;
    }
    while (*len > 0 && is_space((*text)[*len - 1])) {
        (*len)--;
    }
}

static char lower(char c) {
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* Case-insensitive comparison of a counted string with a literal. */
static bool equals(const char *text, size_t len, const char *word) {
    size_t n = strlen(word);
    if (len != n) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (lower(text[i]) != word[i]) {
            return false;
        }
    }
    return true;
}

bool parse_size(const char *text, size_t len, uint64_t *out) {
    trim(&text, &len);
    size_t i = 0;
    uint64_t value = 0;
    while (i < len && text[i] >= '0' && text[i] <= '9') {
        unsigned digit = (unsigned)(text[i] - '0');
        if (value > (UINT64_MAX - digit) / 10) {
            return false;
        }
        value = value * 10 + digit;
        i++;
    }
    if (i == 0) {
        return false;
    }
    static const struct {
        const char *names[3];
        unsigned shift;
    } suffixes[] = {
        {{"", "b", NULL}, 0},      {{"k", "kb", "kib"}, 10}, {{"m", "mb", "mib"}, 20},
        {{"g", "gb", "gib"}, 30}, {{"t", "tb", "tib"}, 40}, {{"p", "pb", "pib"}, 50},
    };
    const char *suffix = text + i;
    size_t suffix_len = len - i;
    for (size_t k = 0; k < sizeof suffixes / sizeof suffixes[0]; k++) {
        for (size_t j = 0; j < 3; j++) {
            const char *name = suffixes[k].names[j];
            if (name != NULL && equals(suffix, suffix_len, name)) {
                unsigned shift = suffixes[k].shift;
                if (value > (UINT64_MAX >> shift)) {
                    return false;
                }
                *out = value << shift;
                return true;
            }
        }
    }
    return false;
}

/* Append "`text`" to `why`. */
static void sb_quoted(strbuf *why, const char *text, size_t len) {
    sb_str(why, "`");
    sb_mem(why, text, len);
    sb_str(why, "`");
}

bool config_parse(const char *text, size_t len, ram_config *out, strbuf *why) {
    bool have_size = false, have_sector = false;
    uint64_t size = DEFAULT_SIZE, sector = 512;

    size_t start = 0;
    while (start <= len) {
        /* One entry: up to the next ',' or the end. */
        size_t end = start;
        while (end < len && text[end] != ',') {
            end++;
        }
        const char *entry = text + start;
        size_t entry_len = end - start;
        start = end + 1;
        trim(&entry, &entry_len);
        if (entry_len == 0) {
            continue;
        }

        const char *eq = memchr(entry, '=', entry_len);
        const char *key = entry;
        size_t key_len = eq != NULL ? (size_t)(eq - entry) : entry_len;
        trim(&key, &key_len);
        const char *value = eq != NULL ? eq + 1 : NULL;
        size_t value_len = 0;
        if (value != NULL) {
            value_len = (size_t)(entry + entry_len - value);
            trim(&value, &value_len);
        }

        bool is_size = key_len == 4 && memcmp(key, "size", 4) == 0;
        bool is_sector = key_len == 6 && memcmp(key, "sector", 6) == 0;
        if (key_len == 0) {
            sb_str(why, "entry ");
            sb_quoted(why, entry, entry_len);
            sb_str(why, " has no key");
            return false;
        }
        if (!is_size && !is_sector) {
            sb_str(why, "unknown key ");
            sb_quoted(why, key, key_len);
            sb_str(why, " (c-ram knows `size` and `sector`)");
            return false;
        }
        if ((is_size && have_size) || (is_sector && have_sector)) {
            sb_quoted(why, key, key_len);
            sb_str(why, ": given twice");
            return false;
        }
        uint64_t bytes;
        if (value == NULL || !parse_size(value, value_len, &bytes)) {
            sb_quoted(why, key, key_len);
            sb_str(why, ": ");
            if (value == NULL) {
                sb_str(why, "needs a value");
            } else {
                sb_quoted(why, value, value_len);
                sb_str(why, " is not a size (expected e.g. 512, 64M, 1G)");
            }
            return false;
        }
        if (is_size) {
            size = bytes;
            have_size = true;
        } else {
            sector = bytes;
            have_sector = true;
        }
    }

    if (sector != 512 && sector != 4096) {
        sb_str(why, "`sector`: sector size must be 512 or 4096, not ");
        sb_u64(why, sector);
        return false;
    }
    if (size > MAX_SIZE) {
        sb_str(why, "`size`: ");
        sb_u64(why, size);
        sb_str(why, " is larger than the maximum, ");
        sb_u64(why, MAX_SIZE);
        return false;
    }
    if (size < sector) {
        sb_str(why, "`size`: ");
        sb_u64(why, size);
        sb_str(why, " is smaller than one sector (");
        sb_u64(why, sector);
        sb_str(why, " bytes)");
        return false;
    }
    out->size = size - size % sector;
    out->sector = (uint32_t)sector;
    return true;
}
