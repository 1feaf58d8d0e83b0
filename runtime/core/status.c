/* The status strings (generated from the one X-macro table) and the error
 * records. */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

const char *bl_status_string(bl_status_t s)
{
    static const char *const strings[] = {
#define BL_STATUS_STRING(name, text) text,
        BL_STATUS_MAP(BL_STATUS_STRING)
#undef BL_STATUS_STRING
    };
    if ((int)s < 0 || s >= BL_STATUS_COUNT) {
        return "unknown status";
    }
    return strings[s];
}

bl_status_t bl_error_set(bl_error_t *err, bl_status_t status, const char *fmt, ...)
{
    if (err != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->status = status;
    }
    return status;
}
