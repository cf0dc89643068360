/* version: the version of this build, set once by the Makefile (`git
 * describe` of a tagged checkout, else the VERSION file) and compiled into
 * version.c alone. Everything that prints a version (starling version, INFO,
 * HELLO, /metrics) reads it here.
 */
#ifndef STARLING_VERSION_H
#define STARLING_VERSION_H

/* "0.1.0", or what `git describe --tags --dirty` says. Static storage. */
extern const char st_version[];

#endif
