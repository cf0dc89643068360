/* version: the one place the version string lives in the binary.
 *
 * The Makefile passes it (from the VERSION file, plus `git describe` when
 * built from a checkout) to version.c alone, so a new version recompiles one
 * file. Everything that prints it (starling version, INFO server, HELLO,
 * /metrics' starling_build_info) reads st_version.
 */
#ifndef STARLING_VERSION_H
#define STARLING_VERSION_H

extern const char st_version[];

#endif
