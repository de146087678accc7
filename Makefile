# make demo | test | test-all | test-starter | test-grader | model | report | explorer | benchmark | limits
# make submission REPORT=report.pdf
PYTHON := .venv/bin/python
STARTER := .venv-starter/bin/python
GRADER := .venv-grader/bin/python
COURSE_FILE := ../shared/data/mnist_1_4_8_train.npz
VAE := ../$(PYTHON) ../vae.py
DRAW_VALIDATION := $(PYTHON) scripts/draw_validation.py $(COURSE_FILE) models/val.npz

.PHONY: demo test test-all test-starter test-grader lint model report explorer benchmark limits submission clean

.venv/.installed: requirements.txt requirements-dev.txt
	./install.sh

.venv-starter/.installed: envs/starter.txt envs/starter-torch.txt
	./install.sh --starter

.venv-grader/.installed: envs/grader.txt envs/grader-torch.txt
	./install.sh --grader

demo: .venv/.installed
	$(PYTHON) scripts/make_demo_data.py demo
	cd demo && $(VAE) train.npz val.npz train vae.pth gmm_params.pkl
	cd demo && $(VAE) recon.npz test_reconstruction vae.pth
	cd demo && $(VAE) test.npz test_classifier vae.pth gmm_params.pkl
	cd demo && ../$(PYTHON) ../scripts/score.py --test test.npz --recon recon.npz

lint: .venv/.installed
	$(PYTHON) -m ruff check vae.py scripts tests run.ipynb
	$(PYTHON) -m ruff check --line-length 100 vae.py
	.venv/bin/vermin -q -t=3.10- --violations --no-tips --eval-annotations vae.py

test: lint  # the quick tier: no training over a few seconds
	$(PYTHON) -m pytest -q -m "not slow"

test-all: lint  # everything, as CI runs it
	$(PYTHON) -m pytest -q

test-starter: .venv-starter/.installed  # the tests that prove the product in the course's environments
	$(STARTER) -m pytest -q -m environment

test-grader: .venv-grader/.installed
	$(GRADER) -m pytest -q -m environment

models/val.npz: .venv/.installed  # the shipped model's validation draw: course data, so never committed
	$(DRAW_VALIDATION)

model: .venv/.installed
	$(DRAW_VALIDATION)
	$(PYTHON) vae.py $(COURSE_FILE) models/val.npz train models/vae.pth models/gmm_params.pkl

report: models/val.npz
	$(PYTHON) scripts/report.py $(COURSE_FILE) models/val.npz models/vae.pth models/gmm_params.pkl --out docs/report

explorer: models/val.npz  # the shipped model's page: explorer/explorer.html
	$(PYTHON) scripts/explorer.py $(COURSE_FILE) models/val.npz models/vae.pth models/gmm_params.pkl --out explorer

# the baseline: the first vae.py of a VAE and a GMM with no refinement, every training time's reference
BASELINE ?= a1fc881
DRAWS ?= 5
benchmark: .venv/.installed
	$(PYTHON) scripts/benchmark.py --baseline $(BASELINE) --draws $(DRAWS)

limits: .venv/.installed
	$(PYTHON) scripts/limits.py

submission: .venv/.installed .venv-starter/.installed
	$(PYTHON) scripts/submission.py --python $(STARTER) $(if $(REPORT),--report "$(REPORT)")

clean:
	rm -rf demo report explorer .pytest_cache .ruff_cache vae_reconstructed.npz vae.csv submission.zip
