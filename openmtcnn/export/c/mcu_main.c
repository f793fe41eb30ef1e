/* Minimal Cortex-M4 program: detect faces in the camera frame, forever. Links with nosys specs
 * so that arm-none-eabi-size counts the detector, the frame buffer and nothing of a board. */
#include "mtcnn.h"

#define MAX_FACES 8

uint8_t mtcnn_frame[MTCNN_FRAME_BYTES]; /* filled by the camera driver (DMA) */
mtcnn_face_t mtcnn_faces[MAX_FACES];
volatile int mtcnn_found;

int main(void)
{
    for (;;)
        mtcnn_found = mtcnn_detect(mtcnn_frame, MTCNN_MAX_W, MTCNN_MAX_H, mtcnn_faces, MAX_FACES);
}
