#include "tools/img/img.h"
int img_cmd_dd(int argc, char **argv) { (void)argc; (void)argv; return img_error("not yet"); }
