/* Host driver of the exported detector: detections of PPM images, or one net's raw outputs.
 *
 *   mtcnn_host IMAGE.ppm ...            per image: "image PATH N", then per face
 *                                       "q_logit score x1 y1 x2 y2 lx0 ly0 ... lx4 ly4" (1/16 pixel)
 *   mtcnn_host --pnet IN W H OUT        P-Net map of a raw W x H RGB image (int32 outputs)
 *   mtcnn_host --rnet IN N OUT          R-Net on N raw 24 x 24 RGB crops
 *   mtcnn_host --onet IN N OUT          O-Net on N raw 48 x 48 RGB crops
 *   mtcnn_host --info                   arena bytes and limits
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mtcnn.h"

#define MAX_FACES 256

static uint8_t frame[MTCNN_FRAME_BYTES];
static mtcnn_face_t faces[MAX_FACES];

static int next_int(FILE *f)
{
    int c = fgetc(f), v = 0;
    while (c == '#' || c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        if (c == '#')
            while (c != '\n' && c != EOF)
                c = fgetc(f);
        c = fgetc(f);
    }
    if (c < '0' || c > '9')
        return -1;
    for (; c >= '0' && c <= '9'; c = fgetc(f))
        if ((v = v * 10 + (c - '0')) > 1000000)
            return -1;
    return v; /* the one whitespace after the number is consumed */
}

static int read_ppm(const char *path, int *w, int *h)
{
    FILE *f = fopen(path, "rb");
    int ok = 0, maxval;
    if (!f)
        return 0;
    if (fgetc(f) == 'P' && fgetc(f) == '6') {
        *w = next_int(f);
        *h = next_int(f);
        maxval = next_int(f);
        ok = *w > 0 && *h > 0 && *w <= MTCNN_MAX_W && *h <= MTCNN_MAX_H && maxval == 255 &&
             fread(frame, 3, (size_t)(*w * *h), f) == (size_t)(*w * *h);
    }
    fclose(f);
    return ok;
}

static void *read_file(const char *path, size_t bytes)
{
    FILE *f = fopen(path, "rb");
    void *data = malloc(bytes ? bytes : 1);
    if (!f || !data || fread(data, 1, bytes, f) != bytes) {
        fprintf(stderr, "cannot read %zu bytes from %s\n", bytes, path);
        exit(1);
    }
    fclose(f);
    return data;
}

static void write_file(const char *path, const void *data, size_t bytes)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, bytes, f) != bytes) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    fclose(f);
}

static int run_net(int argc, char **argv)
{
    int n, i, size, outs;
    uint8_t *in;
    int32_t *out;
    if (!strcmp(argv[1], "--pnet")) {
        int w, h, cells;
        if (argc != 6)
            return 2;
        w = atoi(argv[3]);
        h = atoi(argv[4]);
        in = read_file(argv[2], (size_t)w * h * 3);
        out = malloc((size_t)w * h * MTCNN_PNET_OUT * sizeof *out);
        cells = out ? mtcnn_pnet_map(in, w, h, out) : -1;
        if (cells < 0) {
            fprintf(stderr, "P-Net map failed (width above %d?)\n", MTCNN_LEVEL0_W);
            return 1;
        }
        write_file(argv[5], out, (size_t)cells * MTCNN_PNET_OUT * sizeof *out);
        return 0;
    }
    if (argc != 5)
        return 2;
    size = !strcmp(argv[1], "--rnet") ? 24 : 48;
    outs = size == 24 ? MTCNN_RNET_OUT : MTCNN_ONET_OUT;
    n = atoi(argv[3]);
    in = read_file(argv[2], (size_t)n * size * size * 3);
    out = malloc((size_t)n * outs * sizeof *out + 1);
    if (!out)
        return 1;
    for (i = 0; i < n; i++) {
        if (size == 24)
            mtcnn_rnet(in + (size_t)i * size * size * 3, out + i * outs);
        else
            mtcnn_onet(in + (size_t)i * size * size * 3, out + i * outs);
    }
    write_file(argv[4], out, (size_t)n * outs * sizeof *out);
    return 0;
}

int main(int argc, char **argv)
{
    int a, i, k, n, w, h;
    if (argc >= 2 && (!strcmp(argv[1], "--pnet") || !strcmp(argv[1], "--rnet") || !strcmp(argv[1], "--onet"))) {
        int rc = run_net(argc, argv);
        if (rc == 2)
            fprintf(stderr, "usage: %s --pnet IN W H OUT | --rnet IN N OUT | --onet IN N OUT\n", argv[0]);
        return rc;
    }
    if (argc == 2 && !strcmp(argv[1], "--info")) {
        printf("arena_bytes %d\nframe_bytes %d\nmax_w %d\nmax_h %d\nlevel0_w %d\n", MTCNN_ARENA_BYTES,
               MTCNN_FRAME_BYTES, MTCNN_MAX_W, MTCNN_MAX_H, MTCNN_LEVEL0_W);
        return 0;
    }
    if (argc < 2) {
        fprintf(stderr, "usage: %s IMAGE.ppm ... (at most %dx%d)\n", argv[0], MTCNN_MAX_W, MTCNN_MAX_H);
        return 2;
    }
    for (a = 1; a < argc; a++) {
        if (!read_ppm(argv[a], &w, &h)) {
            fprintf(stderr, "%s: not a binary PPM of at most %dx%d\n", argv[a], MTCNN_MAX_W, MTCNN_MAX_H);
            return 1;
        }
        n = mtcnn_detect(frame, w, h, faces, MAX_FACES);
        printf("image %s %d\n", argv[a], n);
        for (i = 0; i < n; i++) {
            printf("%ld %.6f", (long)faces[i].q_logit, faces[i].score);
            for (k = 0; k < 4; k++)
                printf(" %ld", (long)faces[i].q_box[k]);
            for (k = 0; k < 10; k++)
                printf(" %ld", (long)faces[i].q_landmarks[k]);
            printf("\n");
        }
    }
    return 0;
}
