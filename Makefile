# make demo | make test | make test-oldest | make model | make report | make benchmark | make limits
PYTHON := .venv/bin/python
OLDEST := .venv-oldest/bin/python
COURSE_FILE := ../shared/data/mnist_1_4_8_train.npz
VAE := ../$(PYTHON) ../vae.py

.PHONY: demo test test-oldest lint model report benchmark limits clean

.venv/.installed: requirements.txt requirements-dev.txt
	./install.sh

.venv-oldest/.installed: requirements-oldest.txt
	./install.sh --oldest

demo: .venv/.installed
	$(PYTHON) scripts/make_demo_data.py demo
	cd demo && $(VAE) train.npz val.npz train vae.pth gmm_params.pkl
	cd demo && $(VAE) recon.npz test_reconstruction vae.pth
	cd demo && $(VAE) test.npz test_classifier vae.pth gmm_params.pkl
	cd demo && ../$(PYTHON) ../scripts/score.py --test test.npz --recon recon.npz

lint: .venv/.installed
	$(PYTHON) -m ruff check vae.py scripts tests
	.venv/bin/vermin -q -t=3.10- --violations --no-tips --eval-annotations vae.py

test: lint
	$(PYTHON) -m pytest -q

test-oldest: .venv-oldest/.installed
	$(OLDEST) -m pytest -q

model: .venv/.installed
	$(PYTHON) scripts/draw_validation.py $(COURSE_FILE) models/val.npz
	$(PYTHON) vae.py $(COURSE_FILE) models/val.npz train models/vae.pth models/gmm_params.pkl

report: .venv/.installed
	$(PYTHON) scripts/report.py $(COURSE_FILE) models/val.npz models/vae.pth models/gmm_params.pkl --out docs/report

benchmark: .venv/.installed
	$(PYTHON) scripts/benchmark.py

limits: .venv/.installed
	$(PYTHON) scripts/limits.py

clean:
	rm -rf demo report .pytest_cache .ruff_cache vae_reconstructed.npz vae.csv
