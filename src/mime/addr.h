/* RFC 5321 / RFC 6531 addresses. Pure functions, no I/O. */
#ifndef POSTERN_MIME_ADDR_H
#define POSTERN_MIME_ADDR_H
#include <stdbool.h>
#include <stddef.h>

/* Parses an SMTP path at the start of s (RFC 5321 4.1.2): "<local@domain>",
 * with an optional source route "<@a,@b:local@domain>" (accepted, discarded).
 * local: dot-string or quoted-string; domain: a hostname or an address literal
 * "[1.2.3.4]" / "[IPv6:...]". UTF-8 (RFC 6531) in local part and domain only
 * when utf8 is true. "<>" only when allow_null.
 * Returns the number of bytes consumed (> 0) and *addr_r a heap string
 * ("local@domain", domain lowercased, "" for <>), or -1 on a syntax error.
 * Limits (RFC 5321 4.5.3.1): local part 64 octets, domain 255, path 256. */
int addr_parse_path(const char *s, bool allow_null, bool utf8, char **addr_r);

/* Checks "local@domain" as parse_path would (without brackets). */
bool addr_is_valid(const char *addr, bool utf8);
/* Domain part of "local@domain" (pointer into addr), or NULL. */
const char *addr_domain(const char *addr);
/* true if any byte >= 0x80 */
bool addr_has_8bit(const char *s);
/* Lowercase hostname syntax check (letters, digits, hyphen, dots, UTF-8 labels allowed when utf8). */
bool addr_is_valid_domain(const char *d, bool utf8);

#endif
