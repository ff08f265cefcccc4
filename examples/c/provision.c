/*
 * A provisioning program in C over include/tpmvsc.h: create a card with an admin key,
 * change its PIN, unblock it with the administrator's challenge-response, list, destroy.
 *
 * Build: cc -Iinclude examples/c/provision.c -Ltarget/release -ltpmvsc \
 *           -Wl,-rpath,$PWD/target/release -o provision
 * Run:   TPMVSC_STORE=... TPMVSC_TCTI=... ./provision CARD-NAME
 */
#include <stdio.h>
#include <stdlib.h>
#include <tpmvsc.h>

#define ADMIN_KEY "0123456789abcdeffedcba987654321089abcdef01234567"

static int check(tpmvsc_context *ctx, int rc, const char *what) {
    if (rc != TPMVSC_OK) {
        fprintf(stderr, "%s failed (%d): %s\n", what, rc, tpmvsc_error_message(ctx));
        exit(1);
    }
    return rc;
}

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "c-example";
    tpmvsc_context *ctx = NULL;
    if (tpmvsc_context_new(&ctx) != TPMVSC_OK) {
        fprintf(stderr, "cannot open the card store\n");
        return 1;
    }
    char card_id[TPMVSC_CARD_ID_SIZE], instance[TPMVSC_INSTANCE_ID_SIZE];
    check(ctx, tpmvsc_card_create(ctx, name, "first-pin-1", NULL, ADMIN_KEY, 1, card_id,
                                  sizeof card_id, instance, sizeof instance), "create");
    printf("created %s: card ID %s, instance %s\n", name, card_id, instance);

    check(ctx, tpmvsc_pin_change(ctx, name, "first-pin-1", "second-pin-2"), "change PIN");
    int rc = tpmvsc_pin_change(ctx, name, "first-pin-1", "third-pin-3");
    printf("old PIN refused: %s (%d: %s)\n", rc == TPMVSC_ERR_WRONG_SECRET ? "yes" : "NO", rc,
           tpmvsc_error_message(ctx));
    if (rc != TPMVSC_ERR_WRONG_SECRET) return 1;

    char challenge[TPMVSC_CHALLENGE_SIZE], response[TPMVSC_CHALLENGE_SIZE];
    size_t left = 0;
    check(ctx, tpmvsc_challenge_get(ctx, name, challenge, sizeof challenge, &left), "challenge");
    check(ctx, tpmvsc_admin_response(ADMIN_KEY, challenge, response, sizeof response), "response");
    printf("challenge %s (%zu left), response %s\n", challenge, left, response);
    check(ctx, tpmvsc_admin_unblock(ctx, name, response, "admin-set-4"), "admin unblock");
    check(ctx, tpmvsc_pin_change(ctx, name, "admin-set-4", "fifth-pin-5"), "PIN set by admin");

    size_t size = 0;
    check(ctx, tpmvsc_card_list(ctx, NULL, &size), "list size");
    char *json = malloc(size);
    check(ctx, tpmvsc_card_list(ctx, json, &size), "list");
    printf("cards: %s\n", json);
    free(json);

    check(ctx, tpmvsc_card_destroy(ctx, name), "destroy");
    printf("destroyed %s\n", name);
    tpmvsc_context_free(ctx);
    return 0;
}
