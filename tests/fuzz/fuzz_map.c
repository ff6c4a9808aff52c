/*
 * fuzz_map.c - libFuzzer target: the input is a sequence of map operations,
 * run against safemap and the reference model (model.h) through the same
 * engine as the differential test (diff_engine.h).
 *
 * Input format (missing bytes read as 0):
 *   byte 0            configuration: index into diff_configs
 *   then per operation:
 *     1 byte          operation (op_table below, weighted to point ops)
 *     1 byte          key selector; its top two bits choose the kind:
 *                       0  small key: the low 6 bits - 16 (dense, collides)
 *                       1  an existing key: next 2 bytes index the model
 *                       2  an extreme key: next byte indexes the table
 *                       3  any key: next 8 bytes
 *     2 bytes         argument (value rewrites, pins, reserve size,
 *                     which entries an iteration deletes)
 *
 * The engine compares every result with the model; sm_map_verify runs after
 * every 64th step, every step that allocated or freed memory, and the last.  Any disagreement
 * prints the engine's message and aborts; the default misuse handler aborts on any event; a block
 * left after sm_map_free aborts too. Build with -DSM_BUILD_FUZZ=ON (clang) and run `make fuzz`.  In
 * the normal test build, replay_main.c runs the corpus through this file as a test.
 */
#include "diff_engine.h"

#include <inttypes.h>

typedef struct reader {
    const uint8_t *p, *end;
} reader;

static uint64_t read_bytes(reader *r, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | (r->p < r->end ? *r->p++ : 0);
    return v;
}

static const int op_table[16] = {
    DOP_PUT,    DOP_PUT, DOP_PUT, DOP_GET, DOP_GET,  DOP_FIND,     DOP_FIND,    DOP_UPSERT,
    DOP_UPSERT, DOP_DEL, DOP_DEL, DOP_DEL, DOP_ITER, DOP_ITER_DEL, DOP_RESERVE, DOP_CLEAR,
};

static int64_t read_key(reader *r, const model *m)
{
    uint64_t sel = read_bytes(r, 1);
    switch (sel >> 6) {
    case 0:
        return (int64_t)(sel & 63) - 16;
    case 1: {
        uint64_t i = read_bytes(r, 2);
        return m->len ? m->keys[i % m->len] : (int64_t)i;
    }
    case 2:
        return diff_extreme_keys[read_bytes(r, 1) % DIFF_NEXTREME];
    default:
        return (int64_t)read_bytes(r, 8);
    }
}

static void fuzz_setup(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    cnt_install(); /* while the library holds nothing */
}

static void report_and_abort(const diff_config *c, uint64_t n, int op, int64_t key, uint64_t arg,
                             const char *why)
{
    fprintf(stderr, "fuzz_map: %s, operation #%" PRIu64 " (%s %" PRId64 " %" PRIu64 "): %s\n",
            c->name, n, diff_op_names[op], key, arg, why);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_setup();
    reader rd = {data, data + size};
    const diff_config *c = &diff_configs[read_bytes(&rd, 1) % DIFF_NCONFIGS];
    diff_run run;
    if (diff_open(&run, c) != 0) {
        fprintf(stderr, "fuzz_map: cannot create a %s map\n", c->name);
        abort();
    }
    run.verify = 0; /* verified below, not after every step */
    size_t allocs = 0, frees = 0;
    for (uint64_t n = 0; rd.p < rd.end; n++) {
        int op = op_table[read_bytes(&rd, 1) % 16];
        int64_t key = read_key(&rd, &run.ref);
        uint64_t arg = read_bytes(&rd, 2);
        if (diff_step(&run, op, key, arg) != 0)
            report_and_abort(c, n, op, key, arg, run.err);
        /* sm_map_verify costs O(capacity), ten times a step's cost here: after
         * every 64th step, after any step that allocated or freed memory,
         * and at the end. */
        int memory_changed = atomic_load(&cnt.allocs) != allocs || atomic_load(&cnt.frees) != frees;
        allocs = atomic_load(&cnt.allocs);
        frees = atomic_load(&cnt.frees);
        if ((n % 64 == 0 || memory_changed || rd.p >= rd.end) && sm_map_verify(run.map) != 0)
            report_and_abort(c, n, op, key, arg, "sm_map_verify failed");
    }
    if (diff_check_all(&run) != 0) {
        fprintf(stderr, "fuzz_map: %s, final contents: %s\n", c->name, run.err);
        abort();
    }
    diff_close(&run);
    if (cnt_blocks() != 0 || cnt_bytes() != 0) {
        fprintf(stderr, "fuzz_map: %zu blocks (%zu bytes) outstanding after sm_map_free\n",
                cnt_blocks(), cnt_bytes());
        abort();
    }
    return 0;
}
