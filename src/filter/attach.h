/* Dangerous attachments: a MIME part whose file name (Content-Disposition
 * filename=, Content-Type name=, RFC 2231 and RFC 2047 encodings decoded)
 * ends in an extension of attach_block, or whose decoded content is an
 * executable, a script or an Office document with macros whatever its name
 * (Windows PE "MZ", ELF, Mach-O, a shebang script, OLE2 with a VBA project,
 * OOXML with vbaProject.bin), also inside zip archives (one level, names
 * from the central directory). Pure (no loop, no I/O): runs on a worker over
 * the complete message; fuzzed. Owned by src/filter/attach.c. */
#ifndef POSTERN_FILTER_ATTACH_H
#define POSTERN_FILTER_ATTACH_H
#include <stdbool.h>
#include <stddef.h>

struct attach_rules;
/* extensions: the attach_block list ("exe, scr, ..."), case-insensitive. */
struct attach_rules *attach_rules_new(const char *extensions);
void attach_rules_free(struct attach_rules **rp);

struct attach_result {
	bool dangerous;
	/* why, for the reply and the log: "attachment \"invoice.pdf.exe\": .exe
	 * files are not accepted" / "attachment \"report.doc\" is a document
	 * with macros" */
	char why[200];
};
/* msg: the whole message (header and body). Bounded work: at most
 * the message's size times a small constant; a message whose parts are
 * nested deeper than 32 or number more than 5000 is dangerous (what is not
 * looked into could hide anything). Every name a part carries is checked
 * (filename= and name=, RFC 2231 and plain values, repeated parameters and
 * fields). Returns 0 (r filled), -1 never (otherwise bad MIME is not
 * dangerous by itself). */
int attach_check(const struct attach_rules *rules, const char *msg, size_t len,
		 struct attach_result *r);

#endif
