/* The directory fsync, which makes a rename, a creation or a removal in a
 * directory durable. The writers of checkpoints and of parameter files share
 * it. This header is not installed. */
#ifndef BL_FSYNC_DIR_H
#define BL_FSYNC_DIR_H

/* Opens the directory dir, fsyncs it and closes it. Returns 0, or -1 with
 * errno set to the cause of the first failure (opening or syncing), so a
 * caller can report it with strerror(errno). */
int bl_fsync_dir(const char *dir);

#endif /* BL_FSYNC_DIR_H */
