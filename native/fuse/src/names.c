// Names and symbolic link targets the kernel hands over, checked before
// JavaScript sees them. kDFS stores names as UTF-8 strings: a name that is not
// valid UTF-8 would reach JavaScript with its bad bytes replaced (U+FFFD), so
// that two different names would name one file. Such a name is refused (EILSEQ)
// where it would be made, and looked up as absent (no such name can exist).
// The kernel leaves the length of a name to the file system: past NAME_MAX
// bytes it is ENAMETOOLONG, as on ext4, whether the name is made or looked up.
#include "kdfs_fuse.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

// Whether s is valid UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing
// past U+10FFFF), which is what JavaScript's decoder keeps as it is.
static int valid_utf8(const unsigned char *s) {
  while (*s != 0) {
    unsigned char c = *s;
    if (c < 0x80) {
      s++;
      continue;
    }
    int more;
    unsigned int lowest;
    unsigned int code;
    if ((c & 0xe0) == 0xc0) {
      more = 1;
      lowest = 0x80;
      code = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      more = 2;
      lowest = 0x800;
      code = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      more = 3;
      lowest = 0x10000;
      code = c & 0x07;
    } else {
      return 0;
    }
    for (int i = 1; i <= more; i++) {
      if ((s[i] & 0xc0) != 0x80) return 0;
      code = (code << 6) | (s[i] & 0x3f);
    }
    if (code < lowest || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return 0;
    s += more + 1;
  }
  return 1;
}

int name_errno(const char *name, int making) {
  if (strlen(name) > NAME_MAX) return ENAMETOOLONG;
  if (!valid_utf8((const unsigned char *) name)) return making ? EILSEQ : ENOENT;
  return 0;
}

int target_errno(const char *target) {
  return valid_utf8((const unsigned char *) target) ? 0 : EILSEQ;
}
