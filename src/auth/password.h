/* Password hashes. New hashes are argon2id in PHC form
 * ($argon2id$v=19$m=65536,t=3,p=1$salt$hash). Verification also accepts the
 * Dovecot-style schemes users migrate with: {ARGON2ID}, {ARGON2I},
 * {SHA512-CRYPT}, {SHA256-CRYPT}, {BLF-CRYPT}, {CRYPT} and bare crypt(3)
 * strings ($6$, $5$, $2y$/$2b$, $y$). Both calls are slow by design (tens of
 * milliseconds): run them on a worker thread, never on the loop. */
#ifndef POSTERN_AUTH_PASSWORD_H
#define POSTERN_AUTH_PASSWORD_H

/* Returns a heap string; never NULL. */
char *password_hash(const char *password);
/* 1 match, 0 mismatch, -1 unknown or malformed hash. Constant-time compare. */
int password_verify(const char *hash, const char *password);

#endif
