/* MTCNN face detection in integers (C99): P-Net, R-Net and O-Net as int8 nets, no malloc.
 *
 * All working memory is one static arena sized for frames up to MTCNN_MAX_W x MTCNN_MAX_H
 * (mtcnn_model.h); the results are bit-identical to the Python reference
 * (openmtcnn.compress.int8_cascade.Int8MTCNN). Not reentrant: one detection at a time.
 */
#ifndef MTCNN_H
#define MTCNN_H

#include <stdint.h>

#include "mtcnn_model.h"

typedef struct {
    float x1, y1, x2, y2;     /* box in pixels: [x1, x2) x [y1, y2) */
    float score;              /* face probability */
    float landmarks[10];      /* x, y of: left eye, right eye, nose, mouth left, mouth right */
    int32_t q_box[4];         /* the same box in 1/16 pixel, as the integer cascade computes it */
    int32_t q_landmarks[10];  /* landmarks in 1/16 pixel */
    int32_t q_logit;          /* face logit in 1/4096 (score = 1 / (1 + exp(-q_logit / 4096))) */
} mtcnn_face_t;

/* Faces in an RGB frame (w x h, 3 bytes a pixel, rows packed), best first. Writes at most
 * max_faces to out and returns how many it wrote, or -1 when the frame is larger than
 * MTCNN_MAX_W x MTCNN_MAX_H or an argument is invalid. */
int mtcnn_detect(const uint8_t *rgb, int w, int h, mtcnn_face_t *out, int max_faces);

/* The nets alone, for checks against the reference. Outputs are int32 in 1/4096: face logit,
 * 4 box offsets (R-Net, P-Net), plus 5 landmark x and 5 landmark y (O-Net). */
int mtcnn_pnet_map(const uint8_t *rgb, int w, int h, int32_t *out); /* w <= MTCNN_LEVEL0_W; returns cells */
void mtcnn_rnet(const uint8_t *crop24, int32_t *out);                /* 24 x 24 RGB crop, 5 outputs */
void mtcnn_onet(const uint8_t *crop48, int32_t *out);                /* 48 x 48 RGB crop, 15 outputs */

#endif
