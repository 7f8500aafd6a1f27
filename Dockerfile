FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md ./
COPY service ./service
COPY config ./config
COPY policies ./policies
# Editable, like `make run`: config/ and policies/ are found next to the package in /app.
RUN pip install --no-cache-dir -e '.[redis]'
USER nobody
EXPOSE 8080
ENTRYPOINT ["python", "-m", "service"]
CMD ["serve", "--config", "config/compose.yaml"]
