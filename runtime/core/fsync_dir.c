/* The directory fsync (fsync_dir.h). This is the one place that opens a
 * directory, syncs it and closes it. The errno of a failed sync survives the
 * close. */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "fsync_dir.h"

int bl_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) {
        return -1;
    }
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    if (rc != 0) {
        errno = saved;
    }
    return rc;
}
