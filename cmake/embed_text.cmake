# Turns a text file into a C header holding it as a NUL-terminated char array, so epcsd carries
# its rule API prelude inside the binary (rule states load no host code from disk).
# Usage: cmake -DINPUT=... -DOUTPUT=... -DSYMBOL=... -P embed_text.cmake
file(READ "${INPUT}" hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
file(WRITE "${OUTPUT}.tmp" "/* Generated from ${INPUT}; do not edit. */\nstatic const char ${SYMBOL}[] = {${bytes} 0x00};\n")
file(RENAME "${OUTPUT}.tmp" "${OUTPUT}")
