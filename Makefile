# make demo: set up .venv, train a detector on the synthetic scenes, evaluate it, predict on images and
# a video, track the shapes through a video.  make demo-segment: the same for a U-Net on the scenes' masks.  make demo-classify: a
# classifier on the digits.  make demo-serve: the polyp assistant (yolo_n-seg trained on synthetic
# endoscopy, exported to ONNX, served with its web page playing a video with live outlines at 0.4).
# make demo-inspect: basics on a photo, VGG16's layer table, feature maps and Grad-CAM of the digits model.
# make test: the test suite in 2 processes (pytest-xdist, a test file each at a time, so that a file's
# trained fixtures are made once; tests/conftest.py), then its 15 slowest tests. The demos train with amp=off: with amp=auto a
# CPU with native bf16 would train in bf16, and the README's figures would depend on the CPU.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
DEMO := runs/classify/demo
DETECT := runs/detect/demo
DETECT_TRAIN := data=shapes model=yolo_n imgsz=256 epochs=8 lr=8e-3 mosaic=1.0 close_mosaic=3 scale=0.5 amp=off
POLYPS := runs/segment/polyps
POLYPS_TRAIN := data=polyps model=yolo_n-seg imgsz=256 epochs=12 amp=off
SEGMENT := runs/segment/demo
SEGMENT_TRAIN := data=shapes model=unet width=16 epochs=20 amp=off
PHOTO := runs/basics/chelsea.png

.PHONY: install demo demo-segment demo-classify demo-serve demo-inspect test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev,deploy,serve,restore,inspect,forecast]'
	# HOTA's reference for the tests, without its dependencies: its opencv-python would replace opencv-python-headless
	$(BIN)/pip install --quiet --no-deps 'trackeval==1.3.0'
	touch $@

demo: install
	$(BIN)/foveal detect train $(DETECT_TRAIN) name=demo exist_ok=true
	$(BIN)/foveal detect val weights=$(DETECT)/best.safetensors name=demo-val exist_ok=true
	$(BIN)/python examples/write_scene_images.py $(DETECT)/samples 8
	$(BIN)/foveal detect predict weights=$(DETECT)/best.safetensors source=$(DETECT)/samples conf=0.4 name=demo-images exist_ok=true
	$(BIN)/foveal detect predict weights=$(DETECT)/best.safetensors source=$(DETECT)/samples/scenes.mp4 conf=0.4 name=demo-video exist_ok=true
	$(BIN)/python examples/write_track_video.py $(DETECT)/samples
	$(BIN)/foveal detect track weights=$(DETECT)/best.safetensors source=$(DETECT)/samples/shapes-01.mp4 show_trails=true count=true name=demo-track exist_ok=true
	@echo "report: $(DETECT)/report.html   annotated: runs/detect/demo-images/ and runs/detect/demo-video/scenes.mp4; tracked: runs/detect/demo-track/shapes-01.mp4"

demo-segment: install
	$(BIN)/foveal segment train $(SEGMENT_TRAIN) name=demo exist_ok=true
	$(BIN)/foveal segment val weights=$(SEGMENT)/best.safetensors name=demo-val exist_ok=true
	$(BIN)/python examples/write_scene_images.py $(SEGMENT)/samples 8 segment
	$(BIN)/foveal segment predict weights=$(SEGMENT)/best.safetensors source=$(SEGMENT)/samples name=demo-images exist_ok=true
	$(BIN)/foveal segment predict weights=$(SEGMENT)/best.safetensors source=$(SEGMENT)/samples/scenes.mp4 name=demo-video exist_ok=true
	@echo "report: $(SEGMENT)/report.html   overlays: runs/segment/demo-images/ and runs/segment/demo-video/scenes.mp4"

demo-classify: install
	$(BIN)/foveal classify train data=digits model=simple_cnn amp=off name=demo exist_ok=true
	$(BIN)/foveal classify val weights=$(DEMO)/best.safetensors name=demo-val exist_ok=true
	$(BIN)/python examples/write_digit_images.py $(DEMO)/samples 8
	$(BIN)/foveal classify predict weights=$(DEMO)/best.safetensors source=$(DEMO)/samples topk=3 name=demo-predict exist_ok=true
	@echo "report: $(DEMO)/report.html"

demo-inspect: demo-classify
	$(BIN)/python examples/write_photo.py $(PHOTO) chelsea
	$(BIN)/foveal basics conv source=$(PHOTO) kernel=sobel_x name=demo-conv exist_ok=true
	$(BIN)/foveal basics pool source=$(PHOTO) size=4 name=demo-pool exist_ok=true
	$(BIN)/foveal basics threshold source=$(PHOTO) value=otsu name=demo-threshold exist_ok=true
	$(BIN)/foveal classify info model=vgg16 imgsz=224 rf=true memory=true
	$(BIN)/foveal classify features model=resnet18 imgsz=224 source=$(PHOTO) name=inspect-resnet18 exist_ok=true
	$(BIN)/foveal classify features weights=$(DEMO)/best.safetensors source=$(DEMO)/samples name=inspect-features exist_ok=true
	$(BIN)/foveal classify explain weights=$(DEMO)/best.safetensors source=$(DEMO)/samples method=gradcam name=inspect-explain exist_ok=true
	@echo "pictures: runs/basics/demo-*/ and runs/classify/inspect-*/ (report.html in each)"

demo-serve: install
	$(BIN)/foveal segment train $(POLYPS_TRAIN) name=polyps exist_ok=true
	$(BIN)/foveal segment export weights=$(POLYPS)/best.safetensors
	$(BIN)/python examples/write_polyp_video.py $(POLYPS)/video 96
	$(BIN)/foveal serve weights=$(POLYPS)/best.onnx conf=0.4 video=$(POLYPS)/video/polyps.mp4 port=8000

test: install
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=15

bench: install
	$(BIN)/python benchmarks/train_speed.py
	$(BIN)/python benchmarks/detect_speed.py
	$(BIN)/python benchmarks/segment_speed.py
	$(BIN)/python benchmarks/restore_frame_rate.py
	$(BIN)/python benchmarks/track_speed.py
	$(BIN)/python benchmarks/instance_speed.py
	$(BIN)/python benchmarks/pose_speed.py
	$(BIN)/python benchmarks/busy_machine.py --repeats 1

clean:
	rm -rf $(VENV) runs *.egg-info
