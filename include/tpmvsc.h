/*
 * tpmvsc.h — C API of the tpmvsc provisioning sidecar (libtpmvsc.so).
 *
 * For programs that provision TPM virtual smart cards themselves, as Windows programs
 * call the SmartCardProvisioning API. The same engine as the `tpmvsc` command: cards
 * live in the store named by TPMVSC_STORE (default /var/lib/tpmvsc for root,
 * ~/.local/share/tpmvsc otherwise) and the TPM is the one TPMVSC_TCTI names (default
 * device:/dev/tpmrm0).
 *
 * Rules: every function returns TPMVSC_OK or an error code; outputs are written only on
 * success (except the sizes the two-call functions report); after an error,
 * tpmvsc_error_message() says what happened and what to do. Strings are UTF-8,
 * NUL-terminated. Secrets (PIN, PUK, admin key, response) are passed as strings and
 * not kept. Do not take them from your program's argv: every user of the machine can
 * read it in /proc/PID/cmdline. Read them from a no-echo prompt, standard input, a file
 * or an inherited descriptor, as the tpmvsc command does.
 * A context may be used by one thread at a time.
 *
 * Link with -ltpmvsc.
 */
#ifndef TPMVSC_H
#define TPMVSC_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TPMVSC_OK 0
#define TPMVSC_ERR_FAILED 1           /* see tpmvsc_error_message() */
#define TPMVSC_ERR_ARGUMENT 2         /* NULL pointer, malformed value, policy violation */
#define TPMVSC_ERR_WRONG_SECRET 3     /* wrong PIN, PUK or response (the try was counted) */
#define TPMVSC_ERR_BLOCKED 4          /* PIN/PUK blocked, or the TPM is in lockout */
#define TPMVSC_ERR_BUFFER_TOO_SMALL 5 /* an output buffer is too small */
#define TPMVSC_ERR_INTERNAL 6         /* a bug in tpmvsc was caught; nothing changed */

#define TPMVSC_CARD_ID_SIZE 37      /* GUID + NUL */
#define TPMVSC_INSTANCE_ID_SIZE 27  /* ROOT\SMARTCARDREADER\000n + NUL */
#define TPMVSC_CHALLENGE_SIZE 17    /* 16 hex digits + NUL */

typedef struct TpmvscContext tpmvsc_context;

/* Opens the store (no TPM access yet). */
int tpmvsc_context_new(tpmvsc_context **out);
void tpmvsc_context_free(tpmvsc_context *ctx);
/* Message of the last failed call on ctx; valid until the next call on ctx. */
const char *tpmvsc_error_message(const tpmvsc_context *ctx);

/* Creates a card. pin NULL = default PIN 12345678; puk NULL = no PUK; admin_key_hex
 * NULL = no admin key (unmanaged card), else 48 hex digits; format != 0 formats now.
 * Writes the card ID and the instance ID. */
int tpmvsc_card_create(tpmvsc_context *ctx, const char *name, const char *pin,
                       const char *puk, const char *admin_key_hex, int format,
                       char *card_id_out, size_t card_id_size,
                       char *instance_id_out, size_t instance_id_size);
/* tpmvsc_card_create with a PIN policy in the `tpmvsc create --pin-policy` spelling
 * ("minlen=6,maxlen=12,digits=required,specialchars=disallowed"; NULL = default), which
 * the PIN (required then) and every later new PIN must meet. */
int tpmvsc_card_create_with_policy(tpmvsc_context *ctx, const char *name, const char *pin,
                                   const char *puk, const char *admin_key_hex,
                                   const char *pin_policy, int format,
                                   char *card_id_out, size_t card_id_size,
                                   char *instance_id_out, size_t instance_id_size);
/* Formats a card (every key erased, old copies revoked, card ID kept) with its PUK. */
int tpmvsc_card_format_puk(tpmvsc_context *ctx, const char *card, const char *puk,
                           const char *new_pin);
/* Formats a card with the administrator's response to its current challenge; new_puk is
 * required for a card with a PUK (it gets a new one) and NULL otherwise. */
int tpmvsc_card_format_admin(tpmvsc_context *ctx, const char *card, const char *response_hex,
                             const char *new_puk, const char *new_pin);
/* Destroys a card named by name, card ID or instance ID. Cannot be undone. */
int tpmvsc_card_destroy(tpmvsc_context *ctx, const char *card);
/* The cards as a JSON array. *size: buffer size in, bytes needed (with NUL) out;
 * out may be NULL to ask the size. */
int tpmvsc_card_list(tpmvsc_context *ctx, char *out, size_t *size);

/* Changes the PIN knowing the current one. */
int tpmvsc_pin_change(tpmvsc_context *ctx, const char *card, const char *current_pin,
                      const char *new_pin);
/* Sets a new PIN with the PUK and unblocks the card. */
int tpmvsc_puk_unblock(tpmvsc_context *ctx, const char *card, const char *puk,
                       const char *new_pin);

/* The card's next administrator challenge (spends nothing); left may be NULL. */
int tpmvsc_challenge_get(tpmvsc_context *ctx, const char *card, char *out, size_t size,
                         size_t *left);
/* Sets a new PIN with the administrator's response to the current challenge. A response
 * the TPM judged (right or wrong) spends the challenge; one it never judged (a TPM
 * lockout, no TPM) gives the challenge back. */
int tpmvsc_admin_unblock(tpmvsc_context *ctx, const char *card, const char *response_hex,
                         const char *new_pin);
/* Replaces the admin key (response under the old key); a new batch of challenges. */
int tpmvsc_admin_key_change(tpmvsc_context *ctx, const char *card, const char *response_hex,
                            const char *new_admin_key_hex);
/* A new batch of challenges under the same key (the last challenge is kept for this). */
int tpmvsc_admin_refill(tpmvsc_context *ctx, const char *card, const char *response_hex,
                        const char *admin_key_hex);
/* Help-desk side: the response to a challenge under an admin key (no context needed). */
int tpmvsc_admin_response(const char *admin_key_hex, const char *challenge_hex, char *out,
                          size_t size);

#ifdef __cplusplus
}
#endif
#endif /* TPMVSC_H */
