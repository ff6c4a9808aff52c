/*
 * consumer.c - a program that uses an installed safemap, as a user would.
 * Built by run.sh through find_package(safemap) and through pkg-config.
 */
#include <safemap.h>

#include <stdio.h>
#include <string.h>

SM_TYPED_MAP(quotes, double, 8);

int main(void)
{
    quotes *q = NULL;
    if (quotes_new(&q) != 0)
        return 1;
    double row[8] = {1, 2, 3, 4, 5, 6, 7, 8}, out[8];
    int ok = quotes_put(q, -1, &row) == 0 && quotes_get(q, -1, &out) == 0 &&
             memcmp(row, out, sizeof row) == 0 && quotes_len(q) == 1;
    /* The library linked is the one the header describes. */
    ok = ok && strcmp(sm_version(), SAFEMAP_VERSION_STRING) == 0;
    quotes_free(q);
    printf("consumer: safemap %d.%d.%d, %s\n", SAFEMAP_VERSION_MAJOR, SAFEMAP_VERSION_MINOR,
           SAFEMAP_VERSION_PATCH, ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}
