/*
 * A provisioning program in C over include/tpmvsc.h: create a card with an admin key and
 * a PIN policy, change its PIN, unblock it with the administrator's challenge-response,
 * change the admin key, refill its challenges, format it, list, destroy; then a card with
 * a PUK, unblocked and formatted with the PUK.
 *
 * Build: cc -Iinclude examples/c/provision.c -Ltarget/release -ltpmvsc \
 *           -Wl,-rpath,$PWD/target/release -o provision
 * Run:   TPMVSC_STORE=... TPMVSC_TCTI=... ./provision CARD-NAME
 */
#include <stdio.h>
#include <stdlib.h>
#include <tpmvsc.h>

#define ADMIN_KEY "0123456789abcdeffedcba987654321089abcdef01234567"
#define ADMIN_KEY2 "89abcdef012345670123456789abcdeffedcba9876543210"

/* The response to the card's current challenge under `key`. */
static void respond(tpmvsc_context *ctx, const char *card, const char *key, char *response) {
    char challenge[TPMVSC_CHALLENGE_SIZE];
    if (tpmvsc_challenge_get(ctx, card, challenge, sizeof challenge, NULL) != TPMVSC_OK ||
        tpmvsc_admin_response(key, challenge, response, TPMVSC_CHALLENGE_SIZE) != TPMVSC_OK) {
        fprintf(stderr, "challenge/response failed: %s\n", tpmvsc_error_message(ctx));
        exit(1);
    }
}

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
    /* The policy refuses a PIN without a digit before anything is made. */
    int bad = tpmvsc_card_create_with_policy(ctx, name, "no-digits-here", NULL, ADMIN_KEY,
                                             "minlen=6,digits=required", 1, card_id,
                                             sizeof card_id, instance, sizeof instance);
    printf("PIN without a digit refused: %s (%s)\n", bad == TPMVSC_ERR_ARGUMENT ? "yes" : "NO",
           tpmvsc_error_message(ctx));
    if (bad != TPMVSC_ERR_ARGUMENT) return 1;
    check(ctx, tpmvsc_card_create_with_policy(ctx, name, "first-pin-1", NULL, ADMIN_KEY,
                                              "minlen=6,digits=required", 1, card_id,
                                              sizeof card_id, instance, sizeof instance),
          "create");
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

    char response2[TPMVSC_CHALLENGE_SIZE];
    respond(ctx, name, ADMIN_KEY, response2);
    check(ctx, tpmvsc_admin_key_change(ctx, name, response2, ADMIN_KEY2), "admin key change");
    respond(ctx, name, ADMIN_KEY2, response2);
    check(ctx, tpmvsc_admin_refill(ctx, name, response2, ADMIN_KEY2), "admin refill");
    respond(ctx, name, ADMIN_KEY2, response2);
    check(ctx, tpmvsc_card_format_admin(ctx, name, response2, NULL, "formatted-6"), "format");
    check(ctx, tpmvsc_pin_change(ctx, name, "formatted-6", "seventh-pin-7"), "PIN after format");
    printf("admin key changed, challenges refilled, card formatted\n");

    size_t size = 0;
    check(ctx, tpmvsc_card_list(ctx, NULL, &size), "list size");
    char *json = malloc(size);
    check(ctx, tpmvsc_card_list(ctx, json, &size), "list");
    printf("cards: %s\n", json);
    free(json);

    check(ctx, tpmvsc_card_destroy(ctx, name), "destroy");
    printf("destroyed %s\n", name);

    /* A card with a PUK: the PUK unblocks it and formats it. */
    char puk_card[200];
    snprintf(puk_card, sizeof puk_card, "%s-puk", name);
    check(ctx, tpmvsc_card_create_with_policy(ctx, puk_card, "puk-card-pin-1", "puk-card-puk-1",
                                              NULL, NULL, 1, card_id, sizeof card_id, instance,
                                              sizeof instance),
          "create with a PUK");
    check(ctx, tpmvsc_puk_unblock(ctx, puk_card, "puk-card-puk-1", "puk-card-pin-2"), "PUK unblock");
    check(ctx, tpmvsc_card_format_puk(ctx, puk_card, "puk-card-puk-1", "puk-card-pin-3"),
          "format with the PUK");
    check(ctx, tpmvsc_pin_change(ctx, puk_card, "puk-card-pin-3", "puk-card-pin-4"),
          "PIN after the PUK format");
    printf("PUK card unblocked and formatted with its PUK\n");
    check(ctx, tpmvsc_card_destroy(ctx, puk_card), "destroy the PUK card");
    tpmvsc_context_free(ctx);
    return 0;
}
