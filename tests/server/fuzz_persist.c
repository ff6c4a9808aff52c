/*
 * fuzz_persist.c - libFuzzer target for the snapshot loader and the log
 * replay (server/persist.c), and through replay_main.c a plain program that
 * runs the corpus tests/server/corpus_persist as a regression test.
 *
 * Input: one selector byte, then the file's bytes.  Selector bit 0: 0 a
 * snapshot, 1 a log; bit 1 (logs): a cut-short last record is accepted.
 * The loader must return (0 or an error with a message), never crash, leak
 * or read out of bounds; what it loaded must pass sm_cmap_verify, and a
 * success must leave a message-free, consistent store.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "persist.h"
#include "store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int verify_map(smc_map *m, void *ctx)
{
    (void)ctx;
    if (sm_cmap_verify(smc_map_cmap(m)) != 0)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    smd_store *st;
    if (smd_store_new(&st) != 0)
        return 0;
    int fd = memfd_create("fuzz_persist", MFD_CLOEXEC);
    if (fd < 0)
        abort();
    if (size > 1 && write(fd, data + 1, size - 1) != (ssize_t)(size - 1))
        abort();
    lseek(fd, 0, SEEK_SET);
    char err[512] = "";
    int rc;
    if (data[0] & 1) {
        uint64_t end = 0;
        int torn = 0;
        rc = smd_log_load_fd(st, fd, "fuzz", 0, (data[0] & 2) != 0, &end, &torn, err, sizeof err);
        if (rc == 0 && (end > size - 1 || (torn && !(data[0] & 2))))
            abort();
    } else {
        uint64_t gen = 0;
        rc = smd_snapshot_load_fd(st, fd, "fuzz", &gen, err, sizeof err);
        if (rc == 0 && gen == 0)
            abort();
    }
    if (rc != 0 && strncmp(err, "fuzz: offset ", 13) != 0)
        abort(); /* every rejection names the file and the offset */
    close(fd);
    smd_store_each(st, verify_map, NULL);
    smd_store_free(st);
    return 0;
}
