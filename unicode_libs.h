// unicode_libs.h: PCRE2 (regex Split pre-tokenizers) and utf8proc (NFC/NFD/NFKC/NFKD normalizers) for the
// tokenizer code. A build on a machine without their headers (the Makefile then defines
// HGRN2_NO_UNICODE_LIBS and says so) gets stand-ins under the same names, so the tokenizer code compiles
// unchanged: the loader refuses a tokenizer.json that needs either library (unicode_libs_require) before
// anything could call a stand-in, and every other tokenizer works as in a full build.
#ifndef HGRN2_UNICODE_LIBS_H
#define HGRN2_UNICODE_LIBS_H

#include "common.h"

#ifndef HGRN2_NO_UNICODE_LIBS

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>
static inline void unicode_libs_require(const char *file, const char *what) { (void)file; (void)what; }

#else

#include <stdint.h>
#include <sys/types.h>

static inline void unicode_libs_require(const char *file, const char *what) {
    die("%s: %s needs PCRE2 and utf8proc, and this hgrn2 was built without them: install libpcre2-dev and "
        "libutf8proc-dev (make setup does) and rebuild", file, what);
}
#define HGRN2_NO_LIB_ die("hgrn2 was built without PCRE2 and utf8proc")

typedef struct pcre2_code pcre2_code;
typedef struct pcre2_match_data pcre2_match_data;
typedef struct pcre2_compile_context pcre2_compile_context;
typedef size_t PCRE2_SIZE;
typedef const unsigned char *PCRE2_SPTR;
typedef unsigned char PCRE2_UCHAR;
enum { PCRE2_NO_UTF_CHECK = 1, PCRE2_NO_JIT = 2, PCRE2_UTF = 4, PCRE2_LITERAL = 8, PCRE2_UCP = 16, PCRE2_MULTILINE = 32,
       PCRE2_NEVER_BACKSLASH_C = 64, PCRE2_JIT_COMPLETE = 1, PCRE2_NEWLINE_LF = 2, PCRE2_ERROR_NOMATCH = -1,
       PCRE2_ERROR_JIT_STACKLIMIT = -46 };
static inline PCRE2_SIZE *pcre2_get_ovector_pointer(pcre2_match_data *m) { (void)m; HGRN2_NO_LIB_; return NULL; }
static inline int pcre2_match(const pcre2_code *c, PCRE2_SPTR s, PCRE2_SIZE n, PCRE2_SIZE from, uint32_t o,
                              pcre2_match_data *m, void *x) { (void)c; (void)s; (void)n; (void)from; (void)o; (void)m; (void)x; HGRN2_NO_LIB_; return -1; }
static inline int pcre2_get_error_message(int e, PCRE2_UCHAR *b, PCRE2_SIZE n) { (void)e; (void)b; (void)n; HGRN2_NO_LIB_; return 0; }
static inline pcre2_match_data *pcre2_match_data_create(uint32_t n, void *x) { (void)n; (void)x; HGRN2_NO_LIB_; return NULL; }
static inline void pcre2_match_data_free(pcre2_match_data *m) { (void)m; }   // also called with NULL
static inline void pcre2_code_free(pcre2_code *c) { (void)c; }
static inline pcre2_compile_context *pcre2_compile_context_create(void *x) { (void)x; HGRN2_NO_LIB_; return NULL; }
static inline void pcre2_compile_context_free(pcre2_compile_context *c) { (void)c; }
static inline int pcre2_set_newline(pcre2_compile_context *c, uint32_t v) { (void)c; (void)v; HGRN2_NO_LIB_; return 0; }
static inline pcre2_code *pcre2_compile(PCRE2_SPTR p, PCRE2_SIZE n, uint32_t o, int *e, PCRE2_SIZE *off, pcre2_compile_context *c) {
    (void)p; (void)n; (void)o; (void)e; (void)off; (void)c; HGRN2_NO_LIB_; return NULL; }
static inline int pcre2_jit_compile(pcre2_code *c, uint32_t o) { (void)c; (void)o; HGRN2_NO_LIB_; return 0; }

typedef ssize_t utf8proc_ssize_t;
typedef int32_t utf8proc_int32_t;
typedef uint8_t utf8proc_uint8_t;
enum { UTF8PROC_STABLE = 2, UTF8PROC_COMPAT = 4, UTF8PROC_COMPOSE = 8, UTF8PROC_DECOMPOSE = 16 };
static inline utf8proc_ssize_t utf8proc_decompose(const utf8proc_uint8_t *s, utf8proc_ssize_t n, utf8proc_int32_t *b,
                                                  utf8proc_ssize_t cap, int o) { (void)s; (void)n; (void)b; (void)cap; (void)o; HGRN2_NO_LIB_; return -1; }
static inline utf8proc_ssize_t utf8proc_reencode(utf8proc_int32_t *b, utf8proc_ssize_t n, int o) { (void)b; (void)n; (void)o; HGRN2_NO_LIB_; return -1; }
static inline const char *utf8proc_errmsg(utf8proc_ssize_t e) { (void)e; return "no utf8proc"; }

#endif
#endif
