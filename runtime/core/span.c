/* Spans (span.h): address space reserved with mmap, memory held with
 * mprotect and given back with madvise. */
#define _DEFAULT_SOURCE
#include "span.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static size_t page_bytes(void)
{
    long page = sysconf(_SC_PAGESIZE);
    return page > 0 ? (size_t)page : 4096;
}

static size_t round_down(size_t n, size_t page)
{
    return n / page * page;
}

static size_t round_up(size_t n, size_t page)
{
    return (n + page - 1) / page * page;
}

int bl_span_reserve(bl_span_t *s, size_t nbytes)
{
    memset(s, 0, sizeof *s);
    size_t page = page_bytes();
    if (nbytes == 0 || nbytes > (size_t)-1 - page) {
        errno = EINVAL;
        return -1;
    }
    size_t reserved = round_up(nbytes, page);
    void *p = mmap(NULL, reserved, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        return -1;
    }
    s->base = p;
    s->nbytes = nbytes;
    s->reserved = reserved;
    return 0;
}

/* Makes the pages [lo, hi) readable and writable (lo < hi, page-aligned). */
static int open_pages(bl_span_t *s, size_t lo, size_t hi)
{
    return mprotect(s->base + lo, hi - lo, PROT_READ | PROT_WRITE);
}

/* Gives back the memory of the pages [lo, hi) and makes them fault again. */
static int close_pages(bl_span_t *s, size_t lo, size_t hi)
{
    if (lo >= hi) {
        return 0;
    }
    if (madvise(s->base + lo, hi - lo, MADV_DONTNEED) != 0) {
        return -1;
    }
    return mprotect(s->base + lo, hi - lo, PROT_NONE);
}

int bl_span_widen(bl_span_t *s, size_t lo, size_t hi)
{
    if (s->base == NULL || lo > hi || hi > s->nbytes) {
        errno = EINVAL;
        return -1;
    }
    if (lo == hi) {
        return 0;
    }
    size_t page = page_bytes();
    size_t new_lo = round_down(lo, page), new_hi = round_up(hi, page);
    if (s->lo < s->hi) {
        new_lo = new_lo < s->lo ? new_lo : s->lo;
        new_hi = new_hi > s->hi ? new_hi : s->hi;
    }
    if (open_pages(s, new_lo, new_hi) != 0) {
        return -1;
    }
    s->lo = new_lo;
    s->hi = new_hi;
    s->held = new_hi - new_lo;
    return 0;
}

int bl_span_hold(bl_span_t *s, size_t lo, size_t hi)
{
    if (bl_span_widen(s, lo, hi) != 0) {
        return -1;
    }
    size_t page = page_bytes();
    size_t keep_lo = lo < hi ? round_down(lo, page) : s->lo;
    size_t keep_hi = lo < hi ? round_up(hi, page) : s->lo;
    /* The window now covers [keep_lo, keep_hi); the pages on either side go. */
    if (close_pages(s, s->lo, keep_lo) != 0) {
        return -1;
    }
    s->lo = keep_lo;
    if (close_pages(s, keep_hi, s->hi) != 0) {
        return -1;
    }
    s->hi = keep_hi;
    s->held = keep_hi - keep_lo;
    return 0;
}

/* Writes into pages the union of ranges[0 .. count) (each within limit)
 * rounded out to whole pages, as runs sorted by start with gaps between
 * them, and returns their number; -1 with errno EINVAL for a bad range or
 * count. */
static int merge_pages(const bl_span_range_t *ranges, int count, size_t limit,
                       bl_span_range_t *pages)
{
    if (count < 0 || count > BL_SPAN_MAX_RANGES) {
        errno = EINVAL;
        return -1;
    }
    /* Sorted by start (insertion sort: a few dozen at most), then merged
     * where they touch. */
    int n = 0;
    const size_t page = page_bytes();
    for (int i = 0; i < count; i++) {
        if (ranges[i].lo > ranges[i].hi || ranges[i].hi > limit) {
            errno = EINVAL;
            return -1;
        }
        if (ranges[i].lo == ranges[i].hi) {
            continue;
        }
        bl_span_range_t r = {round_down(ranges[i].lo, page), round_up(ranges[i].hi, page)};
        int at = n++;
        while (at > 0 && pages[at - 1].lo > r.lo) {
            pages[at] = pages[at - 1];
            at--;
        }
        pages[at] = r;
    }
    int merged = 0;
    for (int i = 0; i < n; i++) {
        if (merged > 0 && pages[i].lo <= pages[merged - 1].hi) {
            if (pages[i].hi > pages[merged - 1].hi) {
                pages[merged - 1].hi = pages[i].hi;
            }
        } else {
            pages[merged++] = pages[i];
        }
    }
    return merged;
}

size_t bl_span_ranges_bytes(const bl_span_range_t *ranges, int count)
{
    bl_span_range_t pages[BL_SPAN_MAX_RANGES];
    const int n = merge_pages(ranges, count, (size_t)-1, pages);
    size_t bytes = 0;
    for (int i = 0; i < n; i++) {
        bytes += pages[i].hi - pages[i].lo;
    }
    return bytes;
}

int bl_span_hold_ranges(bl_span_t *s, const bl_span_range_t *ranges, int count)
{
    if (s->base == NULL) {
        errno = EINVAL;
        return -1;
    }
    bl_span_range_t pages[BL_SPAN_MAX_RANGES];
    const int merged = merge_pages(ranges, count, s->nbytes, pages);
    if (merged < 0) {
        return -1;
    }
    /* Each run held, each gap between runs (and around them) given back.
     * After a failure nothing is counted as held: the caller must hold
     * again before it touches the span. */
    size_t from = 0, held = 0;
    int failed = 0;
    for (int i = 0; i < merged && !failed; i++) {
        failed =
            close_pages(s, from, pages[i].lo) != 0 || open_pages(s, pages[i].lo, pages[i].hi) != 0;
        held += pages[i].hi - pages[i].lo;
        from = pages[i].hi;
    }
    if (failed || close_pages(s, from, s->reserved) != 0) {
        const int saved = errno;
        close_pages(s, 0, s->reserved);
        s->lo = s->hi = s->held = 0;
        errno = saved;
        return -1;
    }
    s->lo = merged > 0 ? pages[0].lo : 0;
    s->hi = merged > 0 ? pages[merged - 1].hi : 0;
    s->held = held;
    return 0;
}

size_t bl_span_held_bytes(const bl_span_t *s)
{
    return s->held;
}

void bl_span_release(bl_span_t *s)
{
    if (s->base != NULL) {
        munmap(s->base, s->reserved);
    }
    memset(s, 0, sizeof *s);
}
