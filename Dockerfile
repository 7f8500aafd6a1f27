FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md ./
COPY service ./service
RUN pip install --no-cache-dir '.[redis]'
COPY config ./config
COPY policies ./policies
USER nobody
EXPOSE 8080
ENTRYPOINT ["python", "-m", "service"]
CMD ["serve", "--config", "config/compose.yaml"]
